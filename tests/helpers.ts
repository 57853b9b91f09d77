import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { rgbPng, solidPng } from '../src/main/lib/png';

export function tmpDir(prefix = 'atelier-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** A real RGB PNG of one colour (test input for the history store; generation itself is never faked). */
export function makePng(width: number, height: number, rgb: [number, number, number] = [200, 80, 40]): Buffer {
  return solidPng(width, height, rgb);
}

/** Write a safetensors file with the given tensor names (zero-filled float16 data). */
export function writeSafetensors(file: string, names: string[], metadata: Record<string, string> = {}, truncateBy = 0): void {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let offset = 0;
  for (const n of names) {
    header[n] = { dtype: 'F16', shape: [2, 2], data_offsets: [offset, offset + 8] };
    offset += 8;
  }
  const json = Buffer.from(JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const all = Buffer.concat([len, json, Buffer.alloc(offset)]);
  fs.writeFileSync(file, all.subarray(0, all.length - truncateBy));
}

/** An RGB PNG from a per-pixel function (test datasets: shapes the demo model has never seen). */
export function drawPng(width: number, height: number, pixel: (x: number, y: number) => [number, number, number]): Buffer {
  const rgb = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) for (let x = 0; x < width; x++) rgb.set(pixel(x, y), (y * width + x) * 3);
  return rgbPng(width, height, rgb);
}

/** A pink heart (a concept the shapes demo model never saw) on a flat background, 64×64. */
export function heartPng(bg: [number, number, number], cx = 32, cy = 32, r = 18): Buffer {
  return drawPng(64, 64, (x, y) => {
    const u = (x - cx) / r;
    const v = -(y - cy) / r + 0.2;
    const inside = (u * u + v * v - 0.5) ** 3 - u * u * v * v * v * 0.9 < 0;
    return inside ? [255, 105, 180] : bg;
  });
}

/**
 * A small LoRA dataset of four hearts on four backgrounds, captioned "a pink heart", added through
 * the datasets service (the fault drills' training data). Returns the dataset id.
 */
export function addHeartDataset(datasets: {
  create(name: string, trigger: string): { id: string };
  addFiles(id: string, files: { name: string; data: string }[]): unknown;
}): string {
  const backgrounds: [number, number, number][] = [
    [40, 80, 220],
    [40, 170, 70],
    [240, 210, 40],
    [20, 20, 20],
  ];
  const ds = datasets.create('Hearts', 'atlrheart');
  datasets.addFiles(
    ds.id,
    backgrounds.flatMap((bg, i) => [
      { name: `heart-${i}.png`, data: heartPng(bg, 26 + (i % 3) * 6, 30, 16).toString('base64') },
      { name: `heart-${i}.txt`, data: Buffer.from('a pink heart').toString('base64') },
    ]),
  );
  return ds.id;
}

/** Resolves once `pred()` holds (polled every 20 ms); rejects with "timed out" after `ms`. */
export function waitFor(pred: () => boolean, ms = 60000): Promise<void> {
  const until = Date.now() + ms;
  return new Promise((resolve, reject) => {
    const t = setInterval(() => {
      if (pred()) {
        clearInterval(t);
        resolve();
      } else if (Date.now() > until) {
        clearInterval(t);
        reject(new Error('timed out'));
      }
    }, 20);
  });
}
