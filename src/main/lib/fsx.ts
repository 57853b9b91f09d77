/** File helpers with crash-safety: a reader never sees a half-written file. */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

function fsyncDir(dir: string): void {
  // Persist the rename itself. Not every platform lets a directory be opened (Windows), which is fine to skip.
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* best effort */
  }
}

export const TEMP_MARK = '.tmp-';

/** Write bytes to a temp name in the destination folder, fsync, then rename over the destination. */
export function writeFileAtomic(dest: string, data: Uint8Array | string): void {
  const dir = path.dirname(dest);
  fs.mkdirSync(dir, { recursive: true });
  const tmp = `${dest}${TEMP_MARK}${randomBytes(6).toString('hex')}`;
  let fd: number | null = fs.openSync(tmp, 'wx', 0o644);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(tmp, dest);
    fsyncDir(dir);
  } catch (err) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Width and height from a PNG's IHDR chunk; throws on anything that is not a PNG. */
export function pngSize(data: Uint8Array): { width: number; height: number } {
  const sig = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  if (data.length < 24 || sig.some((b, i) => data[i] !== b)) throw new Error('not a PNG file');
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (String.fromCharCode(...data.subarray(12, 16)) !== 'IHDR') throw new Error('PNG without an IHDR header');
  const width = view.getUint32(16);
  const height = view.getUint32(20);
  if (width === 0 || height === 0) throw new Error('PNG with a zero size');
  return { width, height };
}

/**
 * Resolve a library-relative path, refusing anything that would leave the root:
 * `..` segments, absolute paths, NUL bytes, backslashes, and symlinks pointing outside.
 */
export function resolveInside(root: string, rel: string): string | null {
  if (!rel || rel.includes('\0') || rel.includes('\\') || path.isAbsolute(rel) || /^[a-zA-Z]:/.test(rel)) return null;
  const parts = rel.split('/');
  if (parts.some((p) => p === '..' || p === '.' || p === '')) return null;
  const abs = path.join(root, ...parts);
  let real: string;
  try {
    real = fs.realpathSync(abs);
  } catch {
    return null;
  }
  const realRoot = fs.realpathSync(root);
  if (real !== realRoot && !real.startsWith(realRoot + path.sep)) return null;
  return real;
}
