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

const DTYPE_BYTES: Record<string, number> = { F64: 8, I64: 8, U64: 8, F32: 4, I32: 4, U32: 4, F16: 2, BF16: 2, I16: 2, U16: 2, I8: 1, U8: 1, BOOL: 1, F8_E4M3: 1, F8_E5M2: 1 };

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/** Why a header's tensor entry cannot be what it claims, or null when it is well-formed. */
function badTensor(t: unknown): string | null {
  if (!t || typeof t !== 'object' || Array.isArray(t)) return 'is not an object';
  const { dtype, shape, data_offsets: off } = t as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
  if (typeof dtype !== 'string') return 'has no dtype';
  if (!Array.isArray(shape) || !shape.every(isCount)) return 'has no valid shape';
  if (!Array.isArray(off) || off.length !== 2 || !isCount(off[0]) || !isCount(off[1]) || off[0] > off[1]) return 'has no valid data offsets';
  const bytes = DTYPE_BYTES[dtype];
  const needed = bytes === undefined ? null : shape.reduce((a: number, b: number) => a * b, 1) * bytes;
  if (needed !== null && needed !== off[1] - off[0]) return `holds ${off[1] - off[0]} bytes, but its shape [${shape.join(', ')}] of ${dtype} needs ${needed}`;
  return null;
}

export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const fd = fs.openSync(file, 'r');
  try {
    const size = fs.fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(64, size));
    fs.readSync(fd, head, 0, head.length, 0);
    if (size < 8) throw new NotSafetensorsError(`${sniffFileKind(head)} (only ${size} bytes)`);
    const len = Number(head.readBigUInt64LE(0));
    // A JSON header after the length field: a safetensors file, if a damaged one.
    const jsonHeader = head.length > 8 && head[8] === 0x7b;
    if (len < 2 || len > MAX_HEADER || 8 + len > size) {
      // Its length field lies (or the file was cut off).
      if (jsonHeader) throw new NotSafetensorsError(`a damaged safetensors file (its header claims ${len} bytes; the whole file has ${size})`);
      throw new NotSafetensorsError(sniffFileKind(head));
    }
    const buf = Buffer.alloc(len);
    fs.readSync(fd, buf, 0, len, 8);
    let json: unknown;
    try {
      json = JSON.parse(buf.toString('utf8'));
    } catch {
      throw new NotSafetensorsError(jsonHeader ? 'a damaged safetensors file (its header is not valid JSON)' : sniffFileKind(head));
    }
    if (!json || typeof json !== 'object' || Array.isArray(json)) throw new NotSafetensorsError('a damaged safetensors file (its header is not a JSON object)');
    const { __metadata__, ...tensors } = json as { __metadata__?: unknown };
    let end = 0;
    for (const [name, t] of Object.entries(tensors)) {
      const why = badTensor(t);
      if (why) throw new NotSafetensorsError(`a damaged safetensors file (the header's tensor ${JSON.stringify(name.slice(0, 80))} ${why})`);
      end = Math.max(end, (t as { data_offsets: [number, number] }).data_offsets[1]);
    }
    if (8 + len + end > size) throw new NotSafetensorsError(`a truncated safetensors file (${size} of ${8 + len + end} bytes)`);
    const metadata = __metadata__ && typeof __metadata__ === 'object' && !Array.isArray(__metadata__) ? (__metadata__ as Record<string, string>) : {};
    return { tensors: tensors as SafetensorsHeader['tensors'], metadata };
  } finally {
    fs.closeSync(fd);
  }
}
