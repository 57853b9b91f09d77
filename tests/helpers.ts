import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
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
