/**
 * Reading what a model file is without loading it: the safetensors header is
 * 8 bytes of little-endian length followed by that much JSON (tensor names,
 * dtypes, shapes, offsets, and a `__metadata__` map).
 */
import fs from 'node:fs';

export interface SafetensorsHeader {
  tensors: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  metadata: Record<string, string>;
}

const MAX_HEADER = 100 * 1024 * 1024;

export class NotSafetensorsError extends Error {}

/** What a file that is not safetensors most likely is, for an error message a person can act on. */
export function sniffFileKind(head: Buffer): string {
  if (head.length >= 2 && head[0] === 0x80 && head[1] <= 5) return 'a Python pickle (the unsafe .ckpt/.pt format)';
  if (head.length >= 4 && head.readUInt32BE(0) === 0x504b0304) return 'a zip archive (PyTorch .ckpt/.pt pickles are stored this way)';
  if (head.length > 0 && [...head.subarray(0, Math.min(64, head.length))].every((b) => b === 9 || b === 10 || b === 13 || (b >= 32 && b < 127)))
    return 'a text file';
  return 'not a safetensors file';
}

export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(64, size));
    fs.readSync(fd, head, 0, head.length, 0);
    if (size < 8) throw new NotSafetensorsError(`${sniffFileKind(head)} (only ${size} bytes)`);
    const len = Number(head.readBigUInt64LE(0));
    if (len < 2 || len > MAX_HEADER || 8 + len > size) throw new NotSafetensorsError(sniffFileKind(head));
    const buf = Buffer.alloc(len);
    fs.readSync(fd, buf, 0, len, 8);
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(buf.toString('utf8'));
    } catch {
      throw new NotSafetensorsError(sniffFileKind(head));
    }
    const { __metadata__, ...tensors } = json as { __metadata__?: Record<string, string> };
    let end = 0;
    for (const t of Object.values(tensors) as { data_offsets?: [number, number] }[]) end = Math.max(end, t?.data_offsets?.[1] ?? 0);
    if (8 + len + end > size) throw new NotSafetensorsError(`a truncated safetensors file (${size} of ${8 + len + end} bytes)`);
    return { tensors: tensors as SafetensorsHeader['tensors'], metadata: __metadata__ ?? {} };
  } finally {
    fs.closeSync(fd);
  }
}
