import { describe, expect, it } from 'vitest';
import type { Generation, ImageMetadata } from '../../src/shared/contract';
import {
  canvasRecord,
  dateBounds,
  formatCount,
  formFromMetadata,
  gridLayout,
  holesToFetch,
  moveFocus,
  offsetSeed,
  paramsFromGeneration,
  rangeIds,
  selectionJson,
  sheetLayout,
  variationParams,
  visibleRange,
} from '../../src/renderer/features/gallery/recall';

const ASSET = (c: string) => `assets/ab/${c.repeat(64)}.png`;

function gen(over: Partial<Generation> = {}): Generation {
  return {
    id: 'g1',
    createdAt: '2025-01-02T03:04:05.000Z',
    backend: 'local',
    mode: 'txt2img',
    prompt: 'a red circle',
    negativePrompt: 'blurry',
    modelId: 'm1',
    modelName: 'tiny-sd15',
    modelHash: 'abcdef1234',
    sampler: 'Euler a',
    steps: 6,
    cfg: 7,
    seed: 100,
    width: 64,
    height: 64,
    batch: 2,
    strength: null,
    control: null,
    loras: [{ name: 'hearts', hash: 'ffff000011', weight: 0.8, modelId: 'l1' }],
    device: 'cpu/float32',
    timings: { total_ms: 1234 },
    costUsd: null,
    revisedPrompt: null,
    cloud: null,
    favorite: false,
    images: [
      { id: 'i0', generationId: 'g1', index: 0, path: 'images/a.png', sha256: 'x', width: 64, height: 64, seed: 100, parentImageId: null, createdAt: '' },
      { id: 'i1', generationId: 'g1', index: 1, path: 'images/b.png', sha256: 'y', width: 64, height: 64, seed: 101, parentImageId: null, createdAt: '' },
    ],
    ...over,
  };
}

describe('a history entry back into a request', () => {
  it('makes image i again: its seed, batch 1, LoRAs with weights, the cache allowed', () => {
    const r = paramsFromGeneration(gen(), { imageIndex: 1 });
    expect(r.error).toBeNull();
    expect(r.params).toMatchObject({ mode: 'txt2img', prompt: 'a red circle', negativePrompt: 'blurry', modelId: 'm1', sampler: 'Euler a', steps: 6, cfg: 7, seed: 101, width: 64, height: 64, batch: 1, loras: [{ modelId: 'l1', weight: 0.8 }], noCache: false });
  });

  it('says why an entry cannot be made again', () => {
    expect(paramsFromGeneration(gen({ modelId: null })).error).toContain('tiny-sd15');
    expect(paramsFromGeneration(gen({ loras: [{ name: 'gone', hash: null, weight: 1 }] })).error).toContain('LoRA "gone"');
    expect(paramsFromGeneration(gen({ sampler: 'Heun' })).error).toContain('Heun');
  });

  it('keeps the canvas and control inputs of a canvas generation, and the parent of an img2img', () => {
    const canvas = { frame: { x: 8, y: 16, width: 64, height: 64 }, init: ASSET('a'), mask: ASSET('b'), maskBlur: 4, maskOnly: true, maskPadding: 16, fill: 'blur' };
    const control = { type: 'canny', modelId: 'cn', image: ASSET('c'), scale: 0.5, start: 0, end: 0.8 };
    const g = gen({ mode: 'inpaint', strength: 0.9, control: { canvas, control } });
    expect(canvasRecord(g)).toMatchObject({ canvas: { frame: canvas.frame, maskOnly: true }, control: { modelId: 'cn', scale: 0.5 } });
    expect(paramsFromGeneration(g).params).toMatchObject({ mode: 'inpaint', strength: 0.9, canvas: { init: ASSET('a'), mask: ASSET('b') }, control: { image: ASSET('c') } });
    expect(canvasRecord(gen())).toBeNull();
    const i2i = gen({ mode: 'img2img', strength: 0.6, images: [{ ...gen().images[0], parentImageId: 'parent' }] });
    expect(paramsFromGeneration(i2i).params).toMatchObject({ mode: 'img2img', initImageId: 'parent', strength: 0.6 });
  });

  it('variations take the next seeds, wrapping inside uint32', () => {
    const v = variationParams(gen(), 0, 3);
    expect(v.params.map((p) => p.seed)).toEqual([101, 102, 103]);
    expect(v.params.every((p) => p.batch === 1 && p.prompt === 'a red circle')).toBe(true);
    expect(offsetSeed(4294967295, 1)).toBe(0);
    expect(variationParams(gen({ modelId: null }), 0, 2).error).toBeTruthy();
  });
});

describe('a dropped PNG into the form', () => {
  const meta = (over: Partial<ImageMetadata> = {}): ImageMetadata => ({
    source: 'a1111',
    params: { prompt: 'a cat', negativePrompt: 'dog', sampler: 'DPM++ 2M Karras', steps: 30, cfg: 6.5, seed: 42, width: 512, height: 768, modelName: 'x', mode: 'txt2img', loras: [] },
    modelId: 'm9',
    loras: [
      { name: 'found', weight: 0.7, modelId: 'l9' },
      { name: 'missing', weight: 1, modelId: null },
    ],
    notes: ['The LoRA "missing" is not in your library.'],
    ...over,
  });

  it('takes every value the form can hold, with the model and the LoRAs that were found', () => {
    const r = formFromMetadata(meta());
    expect(r.patch).toEqual({ prompt: 'a cat', negativePrompt: 'dog', modelId: 'm9', sampler: 'DPM++ 2M Karras', steps: 30, cfg: 6.5, seed: 42, width: 512, height: 768, loras: [{ modelId: 'l9', weight: 0.7 }] });
    expect(r.restored).toEqual(['prompt', 'negative prompt', 'model', 'sampler', 'steps', 'CFG', 'seed', 'size', '1 LoRA']);
    expect(r.notes).toEqual(['The LoRA "missing" is not in your library.']);
  });

  it('notes what it cannot take', () => {
    const r = formFromMetadata(meta({ modelId: null, loras: [], notes: [], params: { prompt: 'p', sampler: 'Heun++', steps: 500, seed: -1, width: 100, height: 100, mode: 'img2img', strength: 0.4 } }));
    expect(r.patch).toEqual({ prompt: 'p', strength: 0.4, loras: [] });
    expect(r.notes.join(' ')).toMatch(/Heun\+\+.*500 steps.*seed -1.*100×100.*img2img/);
  });
});

describe('the virtual grid', () => {
  it('fits columns and keeps cells square', () => {
    expect(gridLayout(1000, 150, 8)).toEqual({ cols: 6, cell: 160, gap: 8, pitch: 168 });
    expect(gridLayout(100, 150, 8).cols).toBe(1);
  });

  it('renders only rows near the viewport, even for 100,000 items', () => {
    const l = gridLayout(1000, 150, 8);
    const r = visibleRange(168 * 5000, 700, l, 100000);
    expect(r.firstRow).toBe(4998);
    expect(r.end - r.start).toBeLessThan(80);
    expect(visibleRange(0, 700, l, 3)).toEqual({ firstRow: 0, lastRow: 0, start: 0, end: 3 });
  });

  it('moves the focus with the arrow keys', () => {
    expect(moveFocus(-1, 'ArrowRight', 5, 20)).toBe(0);
    expect(moveFocus(3, 'ArrowDown', 5, 20)).toBe(8);
    expect(moveFocus(18, 'ArrowDown', 5, 20)).toBe(19);
    expect(moveFocus(2, 'ArrowUp', 5, 20)).toBe(0);
    expect(moveFocus(7, 'End', 5, 20)).toBe(19);
    expect(moveFocus(0, 'ArrowLeft', 5, 0)).toBe(-1);
  });

  it('fetches the holes under the viewport once, upward when loaded rows lie below', () => {
    const items = Array.from({ length: 1000 }, (_, i) => (i < 200 ? gen({ id: `g${i}` }) : undefined));
    expect(holesToFetch(items, 150, 260, 200, [])).toEqual([200]);
    expect(holesToFetch(items, 150, 260, 200, [[200, 400]])).toEqual([]);
    expect(holesToFetch(items, 300, 700, 200, [])).toEqual([300, 500]);
    const tail = items.map((_, i) => (i >= 800 ? gen({ id: `t${i}` }) : undefined));
    expect(holesToFetch(tail, 700, 850, 200, [])).toEqual([600]);
  });

  it('selects ranges of loaded items', () => {
    const items = [gen({ id: 'a' }), undefined, gen({ id: 'c' }), gen({ id: 'd' })];
    expect(rangeIds(items, 3, 0)).toEqual(['a', 'c', 'd']);
  });
});

describe('filters, counts and exports', () => {
  it('turns date ranges into ISO bounds', () => {
    const now = new Date(2025, 5, 15, 13, 30);
    expect(dateBounds('all', now)).toEqual({});
    expect(dateBounds('today', now)).toEqual({ from: new Date(2025, 5, 15).toISOString() });
    expect(dateBounds('7d', now)).toEqual({ from: new Date(now.getTime() - 7 * 86400000).toISOString() });
    expect(dateBounds('custom', now, '2025-06-01', '2025-06-10')).toEqual({ from: new Date(2025, 5, 1).toISOString(), to: new Date(2025, 5, 11).toISOString() });
    expect(dateBounds('custom', now, '', 'nope')).toEqual({});
  });

  it('counts with separators and says when the count was capped', () => {
    expect(formatCount(1)).toBe('1 generation');
    expect(formatCount(0)).toBe('0 generations');
    expect(formatCount(1234)).toBe('1,234 generations');
    expect(formatCount(10000, true)).toBe('10,000+ generations');
  });

  it('exports a selection as JSON of parameters', () => {
    const j = JSON.parse(selectionJson([gen(), gen({ id: 'g2', seed: 7 })], new Date('2025-01-01T00:00:00Z')));
    expect(j).toMatchObject({ format: 'atelier.selection', count: 2, items: [{ id: 'g1', prompt: 'a red circle', seed: 100, model: 'tiny-sd15', loras: [{ name: 'hearts', weight: 0.8 }] }, { id: 'g2', seed: 7 }] });
    expect(j.items[0].images).toHaveLength(2);
  });

  it('lays a batch out as a near-square sheet', () => {
    expect(sheetLayout(4, 64, 64)).toMatchObject({ cols: 2, rows: 2, width: 128, height: 128 });
    const s = sheetLayout(3, 64, 32);
    expect(s).toMatchObject({ cols: 2, rows: 2, width: 128, height: 64 });
    expect(s.at[2]).toEqual({ x: 0, y: 32 });
  });
});
