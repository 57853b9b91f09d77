import { describe, expect, it } from 'vitest';
import { downsample, ema, fieldErrorsFrom, formatDuration, jobActions, loraNameFrom, niceTicks, planUpload } from '../../src/renderer/features/training/format';

describe('the Train page helpers', () => {
  it('formats durations for the ETA', () => {
    expect(formatDuration(null)).toBe('—');
    expect(formatDuration(44.6)).toBe('45 s');
    expect(formatDuration(200)).toBe('3 min 20 s');
    expect(formatDuration(180)).toBe('3 min');
    expect(formatDuration(2 * 3600 + 5 * 60)).toBe('2 h 05 min');
  });

  it('downsamples a 10k-step curve to at most 1000 points, keeping its range and ends', () => {
    const pts: [number, number][] = Array.from({ length: 10000 }, (_, i) => [i + 1, 1 / (1 + i / 100) + (i === 5000 ? 5 : 0)]);
    const d = downsample(pts, 1000);
    expect(d.length).toBeLessThanOrEqual(1000);
    expect(d.length).toBeGreaterThan(900);
    expect(d[0].step).toBeLessThan(20);
    expect(d[d.length - 1].step).toBeGreaterThan(9980);
    expect(Math.max(...d.map((p) => p.max))).toBeGreaterThan(5); // the spike survives in the band
    expect(downsample([[1, 0.5], [2, NaN], [3, 0.4]])).toHaveLength(2);
    expect(ema([1, 1, 1], 5)).toEqual([1, 1, 1]);
  });

  it('picks round ticks', () => {
    expect(niceTicks(0, 40, 4)).toEqual([0, 10, 20, 30, 40]);
    expect(niceTicks(0.05, 0.23, 4)).toEqual([0.05, 0.1, 0.15, 0.2]);
  });

  it('packs uploads in batches that keep each image with its caption, and reports what it cannot send', () => {
    const f = (name: string, size = 10) => ({ name, size });
    const files = [f('a.png'), f('a.txt'), f('b.jpg'), f('notes.txt'), f('empty.png', 0), f('huge.png', 50 * 1024 * 1024), f('c.png'), f('C.TXT')];
    const plan = planUpload(files, { files: 3, bytes: 1e9, fileBytes: 40 * 1024 * 1024 });
    expect(plan.batches.map((b) => b.map((x) => x.name))).toEqual([['a.png', 'a.txt', 'b.jpg'], ['c.png', 'C.TXT']]);
    expect(plan.orphanCaptions.map((x) => x.name)).toEqual(['notes.txt']);
    expect(plan.skipped.map((s) => s.file)).toEqual(['empty.png', 'huge.png']);
    expect(plan.skipped[1].reason).toMatch(/larger than 42 MB/);
    const many = planUpload(Array.from({ length: 450 }, (_, i) => f(`${i}.png`, 1e6)));
    expect(many.batches.map((b) => b.length)).toEqual([41, 41, 41, 41, 41, 41, 41, 41, 41, 41, 40]);
  });

  it('maps the server’s BAD_REQUEST onto form fields', () => {
    expect(fieldErrorsFrom('Invalid training.start request: config.steps: Too big: expected number to be <=1000000; name: is empty: name the LoRA.')).toEqual({
      steps: 'Too big: expected number to be <=1000000',
      name: 'is empty: name the LoRA',
    });
    expect(fieldErrorsFrom('The dataset Hearts has no images yet: add 20-50 images.')).toEqual({ form: 'The dataset Hearts has no images yet: add 20-50 images.' });
  });

  it('enables the job buttons by state, and names a LoRA after its dataset', () => {
    expect(jobActions('running')).toEqual({ pause: true, resume: false, cancel: true, delete: false });
    expect(jobActions('paused')).toEqual({ pause: false, resume: true, cancel: true, delete: true });
    expect(jobActions('done')).toEqual({ pause: false, resume: false, cancel: false, delete: true });
    expect(loraNameFrom('Pink: hearts / v2')).toBe('Pink-hearts-v2');
    expect(loraNameFrom('  ')).toBe('my-lora');
  });
});
