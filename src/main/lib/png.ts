/**
 * PNG writing shared by everything that makes PNG bytes: the signature, a chunk
 * with its CRC, an RGB encoder, and solid images (the all-black mask of an
 * outpaint with nothing painted).
 */
import zlib from 'node:zlib';

export const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** One chunk: length, type, data, CRC-32 of type + data. */
export function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(td));
  return Buffer.concat([len, td, crc]);
}

/** An 8-bit PNG of one colour: grayscale for one channel value, RGB for three. */
export function solidPng(width: number, height: number, color: number[]): Buffer {
  const channels = color.length === 1 ? 1 : 3;
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = channels === 1 ? 0 : 2;
  const row = Buffer.alloc(1 + width * channels);
  for (let x = 0; x < width; x++) row.set(color.slice(0, channels), 1 + x * channels);
  const raw = Buffer.concat(Array.from({ length: height }, () => row));
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr), pngChunk('IDAT', zlib.deflateSync(raw)), pngChunk('IEND', Buffer.alloc(0))]);
}

/** An 8-bit RGB PNG from packed RGB bytes (3 per pixel, rows top to bottom). */
export function rgbPng(width: number, height: number, rgb: Buffer): Buffer {
  return packedPng(width, height, rgb, 3);
}

/** An 8-bit RGBA PNG from packed RGBA bytes (4 per pixel, rows top to bottom). */
export function rgbaPng(width: number, height: number, rgba: Buffer): Buffer {
  return packedPng(width, height, rgba, 4);
}

function packedPng(width: number, height: number, rgb: Buffer, channels: 3 | 4): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = channels === 4 ? 6 : 2;
  const stride = width * channels;
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) rgb.copy(raw, y * (stride + 1) + 1, y * stride, (y + 1) * stride);
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr), pngChunk('IDAT', zlib.deflateSync(raw)), pngChunk('IEND', Buffer.alloc(0))]);
}
