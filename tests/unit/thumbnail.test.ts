import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodePng, encodePng, shrink, thumbnailFor } from '../../src/main/lib/thumbnail';
import { HistoryStore } from '../../src/main/services/history/store';
import { drawPng, tmpDir } from '../helpers';

describe('thumbnails', () => {
  const checker = drawPng(64, 48, (x, y) => ((x >> 3) + (y >> 3)) % 2 ? [250, 10, 10] : [10, 10, 250]);

  it('decodes 8-bit PNGs (ours and Pillow\'s filtered rows) and shrinks with a box filter', () => {
    const img = decodePng(checker)!;
    expect([img.width, img.height]).toEqual([64, 48]);
    expect([...img.data.subarray(0, 3)]).toEqual([10, 10, 250]);
    expect([...img.data.subarray(8 * 3, 8 * 3 + 3)]).toEqual([250, 10, 10]);
    // Round-trip through our own encoder (filter 0) and through zlib-default encoders of other tools.
    expect(decodePng(encodePng(img))!.data.equals(img.data)).toBe(true);
    const half = shrink(img, 32);
    expect([half.width, half.height]).toEqual([32, 24]);
    expect([...half.data.subarray(0, 3)]).toEqual([10, 10, 250]); // 2x2 boxes inside one 8x8 square
    const tiny = shrink(img, 4); // each output pixel averages red and blue squares
    expect(tiny.data[0]).toBeGreaterThan(60);
    expect(tiny.data[2]).toBeGreaterThan(60);
    // A PNG written by Pillow (adaptive per-row filters), as the worker writes them; pixels checked against Pillow's decode.
    const pil = decodePng(fs.readFileSync(path.join(__dirname, '..', 'fixtures', 'pillow-filtered.png')))!;
    expect([pil.width, pil.height]).toEqual([128, 96]);
    const at = (x: number, y: number) => [...pil.data.subarray((y * 128 + x) * 3, (y * 128 + x) * 3 + 3)];
    expect([at(0, 0), at(1, 0), at(70, 50), at(127, 95)]).toEqual([[0, 0, 0], [2, 0, 5], [200, 30, 60], [254, 29, 86]]);
    expect(decodePng(Buffer.from('nope'))).toBeNull();
    expect(decodePng(checker.subarray(0, 60))).toBeNull();
  });

  it('caches by file and size, and the library serves them only for library images', () => {
    const dir = tmpDir();
    const big = drawPng(600, 400, (x, y) => [x % 256, y % 256, 128]);
    const file = path.join(dir, 'big.png');
    fs.writeFileSync(file, big);
    const t = thumbnailFor(file, 256, path.join(dir, 'thumbs'))!;
    expect(t).not.toBe(file);
    expect(decodePng(fs.readFileSync(t))).toMatchObject({ width: 256, height: 171 });
    expect(thumbnailFor(file, 256, path.join(dir, 'thumbs'))).toBe(t); // cached
    expect(thumbnailFor(file, 1024, path.join(dir, 'thumbs'))).toBe(file); // never upscales

    const s = new HistoryStore({ dir: tmpDir() });
    const g = s.addGeneration({
      backend: 'local', mode: 'txt2img', prompt: 'p', negativePrompt: '', modelId: null, modelName: 'm', modelHash: null, sampler: 'Euler', steps: 1, cfg: 1,
      seed: 1, width: 600, height: 400, batch: 1, strength: null, control: null, loras: [], device: null, timings: {}, costUsd: null, params: {},
      images: [{ data: big, seed: 1 }],
    });
    const rel = g.images[0].path;
    const shown = s.resolveDisplayFile(rel, 256)!;
    expect(shown).toContain(`${path.sep}thumbs${path.sep}`);
    expect(s.resolveDisplayFile(rel, 300)).toBe(s.resolveFile(rel)); // only the gallery's sizes
    expect(s.resolveDisplayFile('../x.png', 256)).toBeNull();
    s.close();
  });
});
