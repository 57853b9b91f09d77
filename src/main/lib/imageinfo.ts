/**
 * What an image file is, from its bytes alone: format, size, and whether it is
 * complete. Used to vet dataset imports without decoding (the worker decodes
 * again when it trains, and skips what still fails). Never throws on bad input:
 * it answers with a reason a person understands.
 */

import { pngChecksumError } from './pngchunks';

export type ImageFormat = 'png' | 'jpeg' | 'webp' | 'bmp' | 'gif';
export type ImageInfo = { ok: true; format: ImageFormat; width: number; height: number } | { ok: false; reason: string };

const PNG_SIG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

function describeUnknown(b: Buffer): string {
  if (b.length === 0) return 'an empty file';
  const head = b.subarray(0, 64).toString('latin1');
  if (/^\s*<(!doctype|html)/i.test(head)) return 'an HTML page, not an image (a download that went wrong?)';
  if (head.startsWith('version https://git-lfs')) return 'a Git LFS pointer, not the image itself';
  if (b[0] === 0x80 || head.startsWith('PK')) return 'not an image (a pickle or zip archive)';
  if (head.startsWith('%PDF')) return 'a PDF, not an image';
  if (/^[\x09\x0a\x0d\x20-\x7e]*$/.test(head)) return 'a text file, not an image';
  return 'not an image Atelier reads (PNG, JPEG, WebP, BMP)';
}

function png(b: Buffer): ImageInfo {
  if (b.length < 33 || b.toString('latin1', 12, 16) !== 'IHDR') return { ok: false, reason: 'a PNG whose header is damaged' };
  const width = b.readUInt32BE(16);
  const height = b.readUInt32BE(20);
  // Walk the chunks to IEND: a truncated download stops before it.
  let off = 8;
  let sawData = false;
  while (off + 8 <= b.length) {
    const len = b.readUInt32BE(off);
    const type = b.toString('latin1', off + 4, off + 8);
    if (off + 12 + len > b.length) return { ok: false, reason: `a truncated PNG (it stops inside its ${type} chunk)` };
    if (type === 'IDAT') sawData = true;
    if (type === 'IEND') return sawData ? { ok: true, format: 'png', width, height } : { ok: false, reason: 'a PNG without image data' };
    off += 12 + len;
  }
  return { ok: false, reason: 'a truncated PNG (no end chunk)' };
}

function jpeg(b: Buffer): ImageInfo {
  let off = 2;
  let size: { width: number; height: number } | null = null;
  while (off + 4 <= b.length) {
    if (b[off] !== 0xff) return { ok: false, reason: 'a damaged JPEG (bad marker)' };
    const marker = b[off + 1];
    if (marker === 0xff) {
      off++;
      continue;
    }
    if (marker === 0xd8 || (marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) {
      off += 2;
      continue;
    }
    const len = b.readUInt16BE(off + 2);
    if (off + 2 + len > b.length) return { ok: false, reason: 'a truncated JPEG' };
    // SOF0..SOF15 except DHT (c4), JPG (c8), DAC (cc)
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) {
      if (len < 7) return { ok: false, reason: 'a damaged JPEG (its frame header is too short)' };
      size = { height: b.readUInt16BE(off + 5), width: b.readUInt16BE(off + 7) };
    }
    if (marker === 0xda) {
      // Start of scan: entropy-coded data follows up to EOI. A complete file ends with FFD9 (maybe padded).
      if (!size) return { ok: false, reason: 'a JPEG without a frame header' };
      const tail = b.subarray(Math.max(off, b.length - 64));
      if (tail.indexOf(Buffer.from([0xff, 0xd9])) < 0) return { ok: false, reason: 'a truncated JPEG (it stops before its end marker)' };
      return { ok: true, format: 'jpeg', ...size };
    }
    off += 2 + len;
  }
  return { ok: false, reason: 'a truncated JPEG' };
}

function webp(b: Buffer): ImageInfo {
  const riffSize = b.readUInt32LE(4) + 8;
  if (b.length < riffSize) return { ok: false, reason: 'a truncated WebP' };
  const fourcc = b.toString('latin1', 12, 16);
  if (fourcc === 'VP8 ' && b.length >= 30) return { ok: true, format: 'webp', width: b.readUInt16LE(26) & 0x3fff, height: b.readUInt16LE(28) & 0x3fff };
  if (fourcc === 'VP8L' && b.length >= 25) {
    const bits = b.readUInt32LE(21);
    return { ok: true, format: 'webp', width: (bits & 0x3fff) + 1, height: ((bits >> 14) & 0x3fff) + 1 };
  }
  if (fourcc === 'VP8X' && b.length >= 30) {
    return { ok: true, format: 'webp', width: 1 + b.readUIntLE(24, 3), height: 1 + b.readUIntLE(27, 3) };
  }
  return { ok: false, reason: 'a WebP file Atelier cannot read' };
}

function bmp(b: Buffer): ImageInfo {
  if (b.length < 26) return { ok: false, reason: 'a truncated BMP' };
  const declared = b.readUInt32LE(2);
  if (declared && b.length < declared) return { ok: false, reason: 'a truncated BMP' };
  return { ok: true, format: 'bmp', width: Math.abs(b.readInt32LE(18)), height: Math.abs(b.readInt32LE(22)) };
}

export function imageInfo(b: Buffer): ImageInfo {
  if (b.length >= 8 && b.subarray(0, 8).equals(PNG_SIG)) return png(b);
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return jpeg(b);
  if (b.length >= 16 && b.toString('latin1', 0, 4) === 'RIFF' && b.toString('latin1', 8, 12) === 'WEBP') return webp(b);
  if (b.length >= 2 && b.toString('latin1', 0, 2) === 'BM') return bmp(b);
  if (b.length >= 6 && /^GIF8[79]a/.test(b.toString('latin1', 0, 6))) return { ok: false, reason: 'a GIF: convert it to PNG to train on it' };
  return { ok: false, reason: describeUnknown(b) };
}

/** Vet an image for training at `minSide` (the short side must be at least half the training resolution). */
export function vetTrainingImage(b: Buffer, minSide: number, maxPixels = 8192 * 8192): ImageInfo {
  const info = imageInfo(b);
  if (!info.ok) return info;
  if (info.width < 1 || info.height < 1) return { ok: false, reason: `a ${info.format.toUpperCase()} with no pixels` };
  if (info.width * info.height > maxPixels) return { ok: false, reason: `${info.width}×${info.height}: too large (more than ${Math.round(maxPixels / 1e6)} megapixels)` };
  if (Math.min(info.width, info.height) < minSide) return { ok: false, reason: `${info.width}×${info.height}: too small (the short side must be at least ${minSide} px)` };
  const damaged = info.format === 'png' ? pngChecksumError(b) : null;
  if (damaged) return { ok: false, reason: damaged };
  return info;
}
