/**
 * PNG text chunks: read every tEXt / zTXt / iTXt chunk of a PNG, and write
 * new ones just before the first IDAT (where A1111, ComfyUI and PNG Info
 * readers look, and where an image viewer ignores them). Pure byte work on a
 * Buffer; pixel data is never touched, so the image stays byte-identical
 * apart from the inserted chunks.
 */
import zlib from 'node:zlib';
import { PNG_SIGNATURE as SIG, pngChunk as chunk } from './png';


export class PngFormatError extends Error {}

interface RawChunk {
  type: string;
  start: number;
  data: Buffer;
}

function* chunks(png: Buffer): Generator<RawChunk> {
  if (png.length < 8 || !png.subarray(0, 8).equals(SIG)) throw new PngFormatError('not a PNG file');
  let off = 8;
  while (off + 8 <= png.length) {
    const len = png.readUInt32BE(off);
    const type = png.toString('latin1', off + 4, off + 8);
    if (off + 12 + len > png.length) throw new PngFormatError(`truncated PNG (inside its ${type} chunk)`);
    yield { type, start: off, data: png.subarray(off + 8, off + 8 + len) };
    if (type === 'IEND') return;
    off += 12 + len;
  }
}

/**
 * Why a PNG is damaged inside a chunk: the first chunk whose CRC-32 does not match its bytes, or
 * null when every chunk up to IEND checks out (truncation and a missing signature are
 * imageinfo's to report). Decoders (libpng, Pillow) refuse such files; checking costs one pass
 * over the bytes, no decoding.
 */
export function pngChecksumError(png: Buffer): string | null {
  try {
    for (const c of chunks(png)) {
      const end = c.start + 8 + c.data.length;
      if (zlib.crc32(png.subarray(c.start + 4, end)) !== png.readUInt32BE(end)) return `a damaged PNG (its ${JSON.stringify(c.type)} chunk fails its checksum)`;
    }
  } catch (err) {
    if (err instanceof PngFormatError) return null;
    throw err;
  }
  return null;
}

/** Text chunks as key → text (the first of each key wins). Throws PngFormatError on what is not a PNG. */
export function readPngText(png: Buffer, maxInflate = 16 * 1024 * 1024): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of chunks(png)) {
    try {
      if (c.type === 'tEXt') {
        const nul = c.data.indexOf(0);
        if (nul <= 0) continue;
        const key = c.data.toString('latin1', 0, nul);
        if (!(key in out)) out[key] = c.data.toString('latin1', nul + 1);
      } else if (c.type === 'zTXt') {
        const nul = c.data.indexOf(0);
        if (nul <= 0) continue;
        const key = c.data.toString('latin1', 0, nul);
        if (!(key in out)) out[key] = zlib.inflateSync(c.data.subarray(nul + 2), { maxOutputLength: maxInflate }).toString('latin1');
      } else if (c.type === 'iTXt') {
        const nul = c.data.indexOf(0);
        if (nul <= 0) continue;
        const key = c.data.toString('latin1', 0, nul);
        const compressed = c.data[nul + 1] === 1;
        let p = nul + 3;
        const langEnd = c.data.indexOf(0, p); // language tag
        if (langEnd < 0) continue;
        const transEnd = c.data.indexOf(0, langEnd + 1); // translated keyword
        if (transEnd < 0) continue;
        p = transEnd + 1;
        const body = c.data.subarray(p);
        if (!(key in out)) out[key] = (compressed ? zlib.inflateSync(body, { maxOutputLength: maxInflate }) : body).toString('utf8');
      }
    } catch {
      /* one damaged text chunk (or a zip bomb past the limit) does not hide the others */
    }
  }
  return out;
}

/**
 * A copy of `png` with these text chunks inserted before the first IDAT, each
 * replacing any chunk of the same key. Latin-1 text goes into tEXt (what A1111
 * writes and most readers expect); anything else into iTXt (UTF-8).
 */
export function writePngText(png: Buffer, entries: Record<string, string>): Buffer {
  const keys = new Set(Object.keys(entries));
  const parts: Buffer[] = [SIG];
  let inserted = false;
  for (const c of chunks(png)) {
    const raw = png.subarray(c.start, c.start + 12 + c.data.length);
    if (c.type === 'tEXt' || c.type === 'iTXt' || c.type === 'zTXt') {
      const nul = c.data.indexOf(0);
      if (nul > 0 && keys.has(c.data.toString('latin1', 0, nul))) continue;
    }
    if (c.type === 'IDAT' && !inserted) {
      for (const [key, text] of Object.entries(entries)) parts.push(textChunk(key, text));
      inserted = true;
    }
    parts.push(raw);
  }
  if (!inserted) throw new PngFormatError('PNG without image data');
  return Buffer.concat(parts);
}

function textChunk(key: string, text: string): Buffer {
  if (!/^[\x20-\x7e]{1,79}$/.test(key)) throw new Error(`bad PNG text key ${JSON.stringify(key)}`);
  // eslint-disable-next-line no-control-regex
  if (/^[\x0a\x20-\x7e\xa0-\xff]*$/.test(text)) return chunk('tEXt', Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0]), Buffer.from(text, 'latin1')]));
  return chunk('iTXt', Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), Buffer.from(text, 'utf8')]));
}
