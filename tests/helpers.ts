import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { solidPng } from '../src/main/lib/png';

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
  const crcTable = Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  const crc = (b: Buffer) => {
    let c = 0xffffffff;
    for (const v of b) c = crcTable[(c ^ v) & 0xff] ^ (c >>> 8);
    return (c ^ 0xffffffff) >>> 0;
  };
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const c = Buffer.alloc(4);
    c.writeUInt32BE(crc(td));
    return Buffer.concat([len, td, c]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const raw = Buffer.alloc(height * (1 + width * 3));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) raw.set(pixel(x, y), y * (1 + width * 3) + 1 + x * 3);
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
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
