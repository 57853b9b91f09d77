/**
 * Canvas generations through the whole app path (assets, job queue, worker,
 * history) with the real worker on tiny models: inpainting keeps every pixel
 * outside the feathered mask, outpainting fills the empty area, and the control
 * image moves the output.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { PNG } from 'pngjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GenerateParams, type GenerateParamsInput } from '../../src/shared/contract';
import { createServices, type Services } from '../../src/main/services';
import { python, ROOT, RUNTIME } from './python';
import { memoryBackend } from '../../src/main/services/settings/settings';
import { tmpDir } from '../helpers';


let services: Services;
let modelId: string;
let controlId: string;

function png(width: number, height: number, pixel: (x: number, y: number) => [number, number, number, number]): string {
  const p = new PNG({ width, height });
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 4;
      const [r, g, b, a] = pixel(x, y);
      p.data[i] = r;
      p.data[i + 1] = g;
      p.data[i + 2] = b;
      p.data[i + 3] = a;
    }
  return services.history.putAsset(PNG.sync.write(p)).path;
}

function read(rel: string): PNG {
  return PNG.sync.read(fs.readFileSync(path.join(services.history.dir, rel)));
}

async function run(p: Partial<GenerateParamsInput>) {
  const job = services.jobs.submit(GenerateParams.parse({ prompt: 'a red circle on a white background', modelId, seed: 11, steps: 4, sampler: 'Euler', width: 64, height: 64, ...p }));
  await services.jobs.whenIdle();
  const done = services.jobs.list().find((j) => j.id === job.id)!;
  expect(done.state, JSON.stringify(done.error)).toBe('done');
  return services.history.get(done.generationId!);
}

beforeAll(async () => {
  const models = tmpDir('atelier-canvas-models-');
  execFileSync(python(), ['-m', 'atelier_runtime.testing.tiny', models, '--controlnet'], { cwd: RUNTIME, env: { ...process.env, PYTHONPATH: RUNTIME }, stdio: ['ignore', 'ignore', 'inherit'] });
  for (const e of fs.readdirSync(models)) if (e.endsWith('.safetensors')) fs.rmSync(path.join(models, e));
  services = createServices({ dataDir: tmpDir('atelier-canvas-'), appRoot: ROOT, settingsBackend: memoryBackend({ modelDirs: [models] }), shell: 'web', version: 'test', pythonOverride: python(), log: () => {} });
  modelId = services.models.list().find((m) => m.kind === 'checkpoint' && m.source !== 'embedded')!.id; // the tiny model, not the shipped demo
  controlId = services.models.list().find((m) => m.kind === 'controlnet' && m.source !== 'embedded')!.id;
});
afterAll(async () => services?.dispose());

describe('canvas generations through the app', () => {
  it('inpainting keeps every pixel outside the feathered mask and records its inputs', async () => {
    const init = png(64, 64, (x, y) => [(x * 4) % 256, (y * 4) % 256, 128, 255]);
    const mask = png(64, 64, (x, y) => (x >= 24 && x < 40 && y >= 24 && y < 40 ? [255, 255, 255, 255] : [0, 0, 0, 255]));
    const g = await run({ mode: 'inpaint', strength: 1, canvas: { frame: { x: 0, y: 0, width: 64, height: 64 }, init, mask, maskBlur: 4 } });
    const out = read(g.images[0].path);
    const src = read(init);
    let changedInside = 0;
    for (let y = 0; y < 64; y++)
      for (let x = 0; x < 64; x++) {
        const i = (y * 64 + x) * 4;
        const same = out.data[i] === src.data[i] && out.data[i + 1] === src.data[i + 1] && out.data[i + 2] === src.data[i + 2];
        const farOutside = x < 24 - 8 || x >= 40 + 8 || y < 24 - 8 || y >= 40 + 8;
        if (farOutside) expect(same, `pixel ${x},${y} changed outside the mask`).toBe(true);
        if (x >= 28 && x < 36 && y >= 28 && y < 36 && !same) changedInside++;
      }
    expect(changedInside).toBeGreaterThan(32);
    expect(g.mode).toBe('inpaint');
    expect(g.control).toMatchObject({ canvas: { init, mask, frame: { width: 64, height: 64 } } });
  });

  it('outpainting fills the empty (transparent) half and keeps the painted half', async () => {
    const init = png(64, 64, (x) => (x < 32 ? [200, 40, 40, 255] : [0, 0, 0, 0]));
    const g = await run({ mode: 'inpaint', strength: 1, canvas: { frame: { x: 0, y: 0, width: 64, height: 64 }, init, mask: null, maskBlur: 4, fill: 'edge' } });
    const out = read(g.images[0].path);
    for (let y = 0; y < 64; y++)
      for (let x = 0; x < 20; x++) {
        const i = (y * 64 + x) * 4;
        expect([out.data[i], out.data[i + 1], out.data[i + 2]]).toEqual([200, 40, 40]);
      }
    expect(out.data[(32 * 64 + 60) * 4 + 3]).toBe(255);
  });

  it('derives canny edges as an asset, and the control image moves the output', async () => {
    const square = png(64, 64, (x, y) => (x >= 16 && x < 48 && y >= 16 && y < 48 ? [255, 255, 255, 255] : [0, 0, 0, 255]));
    const edges = await services.handlers['canvas.canny']({ image: square, low: 100, high: 200 });
    expect(edges.path).toMatch(/^assets\//);
    expect(edges.edgeFraction).toBeGreaterThan(0);
    const left = png(64, 64, (x, y) => (Math.abs(x - 12) < 2 && y > 8 && y < 56 ? [255, 255, 255, 255] : [0, 0, 0, 255]));
    const right = png(64, 64, (x, y) => (Math.abs(x - 52) < 2 && y > 8 && y < 56 ? [255, 255, 255, 255] : [0, 0, 0, 255]));
    const a = await run({ control: { type: 'canny', modelId: controlId, image: left, scale: 1, start: 0, end: 1 } });
    const b = await run({ control: { type: 'canny', modelId: controlId, image: right, scale: 1, start: 0, end: 1 } });
    expect(a.images[0].sha256).not.toBe(b.images[0].sha256);
    expect(a.control).toMatchObject({ control: { image: left, scale: 1 } });
  });
});
