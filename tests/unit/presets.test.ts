import { describe, expect, it } from 'vitest';
import { deviceAdvice, generationPresets, memoryModeFor } from '../../src/shared/presets';

const gpu = (gb: number) => ({ kind: 'cuda', name: `Card ${gb}`, vramMb: gb * 1024 - 300 });

describe('generation presets', () => {
  it('trade steps and sampler at the model’s native size, fewer steps on a CPU', () => {
    const cpu = generationPresets(null, 'sd15', 512);
    expect(cpu.map((p) => [p.name, p.steps, p.sampler, p.width])).toEqual([
      ['preview', 8, 'DPM++ 2M Karras', 512],
      ['standard', 20, 'DPM++ 2M Karras', 512],
      ['quality', 30, 'DPM++ SDE Karras', 512],
    ]);
    expect(generationPresets(gpu(12), 'sdxl', null).map((p) => [p.steps, p.width, p.memoryMode])).toEqual([
      [12, 1024, 'normal'],
      [25, 1024, 'normal'],
      [40, 1024, 'normal'],
    ]);
    expect(generationPresets(null, 'sd15', 64)[0].width).toBe(64); // the demo model
  });

  it('take the user’s edits over the defaults', () => {
    const p = generationPresets(gpu(8), 'sd15', 512, { quality: { steps: 60 }, preview: { sampler: 'LCM' } });
    expect(p.find((x) => x.name === 'quality')!.steps).toBe(60);
    expect(p.find((x) => x.name === 'preview')!).toMatchObject({ sampler: 'LCM', steps: 12 });
  });

  it('pick the memory mode the card needs for the family', () => {
    expect([memoryModeFor(gpu(4), 'sd15'), memoryModeFor(gpu(3), 'sd15'), memoryModeFor(gpu(8), 'sdxl'), memoryModeFor(gpu(6), 'sdxl'), memoryModeFor(gpu(4), 'sdxl')]).toEqual(['low', 'minimal', 'low', 'low', 'minimal']);
    expect(memoryModeFor(null, 'sdxl')).toBe('normal');
  });
});

describe('device advice', () => {
  it('says what a card allows, and what a CPU does', () => {
    const a = deviceAdvice([gpu(12)]);
    expect(a).toMatchObject({ summary: 'Card 12 · 12 GB', sd15: 'good', sdxl: 'good', trainingTier: '12gb' });
    expect(a.lines[1]).toBe('SDXL: yes (memory mode normal).');
    expect(deviceAdvice([gpu(6)]).sdxl).toBe('slow');
    expect(deviceAdvice([gpu(4)]).lines[1]).toMatch(/not recommended/);
    const cpu = deviceAdvice([{ kind: 'cpu', name: 'AMD EPYC', vramMb: 0 }]);
    expect(cpu.summary).toBe('CPU (no NVIDIA GPU found)');
    expect(cpu.lines.join(' ')).toMatch(/demo model makes an image in about a second/);
  });
});
