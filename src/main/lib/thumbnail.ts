/**
 * Gallery thumbnails without a native image library: decode an 8-bit PNG
 * (what the worker writes: RGB or RGBA, also gray, not interlaced), shrink it
 * with a box filter, encode a small RGB PNG. Cached on disk by the source's
 * path, size and mtime, so a changed file gets a new thumbnail. Anything this
 * decoder does not handle (16-bit, palette, interlaced, JPEG) returns null and
 * the caller serves the original.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { writeFileAtomic } from './fsx';
import { PNG_SIGNATURE as SIG, rgbPng } from './png';


export interface RgbImage {
  width: number;
  height: number;
  /** RGB, 3 bytes per pixel, rows top to bottom. */
  data: Buffer;
}

/** Decode an 8-bit, non-interlaced gray/RGB/RGBA PNG to RGB (alpha composited on mid gray). Null when unsupported. */
export function decodePng(png: Buffer, maxPixels = 8192 * 8192): RgbImage | null {
  const d = decodePngPixels(png, maxPixels);
  if (!d) return null;
  const { width, height, channels, px } = d;
  const rgb = Buffer.alloc(width * height * 3);
  for (let i = 0, j = 0; i < width * height; i++, j += channels) {
    if (channels >= 3) {
      const alpha = channels === 4 ? px[j + 3] / 255 : 1;
      for (let k = 0; k < 3; k++) rgb[i * 3 + k] = Math.round(px[j + k] * alpha + 128 * (1 - alpha));
    } else {
      const alpha = channels === 2 ? px[j + 1] / 255 : 1;
      const g = Math.round(px[j] * alpha + 128 * (1 - alpha));
      rgb[i * 3] = rgb[i * 3 + 1] = rgb[i * 3 + 2] = g;
    }
  }
  return { width, height, data: rgb };
}

/** The unfiltered pixels of an 8-bit, non-interlaced gray (1), gray+alpha (2), RGB (3) or RGBA (4) PNG. */
export function decodePngPixels(png: Buffer, maxPixels = 8192 * 8192): { width: number; height: number; channels: 1 | 2 | 3 | 4; px: Buffer } | null {
  if (png.length < 33 || !png.subarray(0, 8).equals(SIG)) return null;
  let off = 8;
  let width = 0;
  let height = 0;
  let colorType = -1;
  const idat: Buffer[] = [];
  while (off + 8 <= png.length) {
    const len = png.readUInt32BE(off);
    const type = png.toString('latin1', off + 4, off + 8);
    if (off + 12 + len > png.length) return null;
    const body = png.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      const depth = body[8];
      colorType = body[9];
      if (depth !== 8 || body[12] !== 0 || ![0, 2, 4, 6].includes(colorType)) return null;
      if (!width || !height || width * height > maxPixels) return null;
    } else if (type === 'IDAT') idat.push(body);
    else if (type === 'IEND') break;
    off += 12 + len;
  }
  if (!width || !idat.length) return null;
  const channels = { 0: 1, 2: 3, 4: 2, 6: 4 }[colorType as 0 | 2 | 4 | 6];
  const stride = width * channels;
  let raw: Buffer;
  try {
    raw = zlib.inflateSync(Buffer.concat(idat), { maxOutputLength: (stride + 1) * height + 1 });
  } catch {
    return null;
  }
  if (raw.length < (stride + 1) * height) return null;
  const px = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = px.subarray(y * stride, (y + 1) * stride);
    const prev = y > 0 ? px.subarray((y - 1) * stride, y * stride) : null;
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? row[i - channels] : 0;
      const b = prev ? prev[i] : 0;
      const c = prev && i >= channels ? prev[i - channels] : 0;
      let v = src[i];
      if (filter === 1) v += a;
      else if (filter === 2) v += b;
      else if (filter === 3) v += (a + b) >> 1;
      else if (filter === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (filter !== 0) return null;
      row[i] = v & 0xff;
    }
  }
  return { width, height, channels: channels as 1 | 2 | 3 | 4, px };
}

/** Box-filter downscale so the longer side is at most `max` (never upscales). */
export function shrink(img: RgbImage, max: number): RgbImage {
  const scale = Math.max(img.width, img.height) / max;
  if (scale <= 1) return img;
  const w = Math.max(1, Math.round(img.width / scale));
  const h = Math.max(1, Math.round(img.height / scale));
  const out = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    const y0 = Math.floor((y * img.height) / h);
    const y1 = Math.max(y0 + 1, Math.floor(((y + 1) * img.height) / h));
    for (let x = 0; x < w; x++) {
      const x0 = Math.floor((x * img.width) / w);
      const x1 = Math.max(x0 + 1, Math.floor(((x + 1) * img.width) / w));
      let r = 0;
      let g = 0;
      let b = 0;
      for (let yy = y0; yy < y1; yy++) {
        for (let xx = x0; xx < x1; xx++) {
          const i = (yy * img.width + xx) * 3;
          r += img.data[i];
          g += img.data[i + 1];
          b += img.data[i + 2];
        }
      }
      const n = (y1 - y0) * (x1 - x0);
      const o = (y * w + x) * 3;
      out[o] = Math.round(r / n);
      out[o + 1] = Math.round(g / n);
      out[o + 2] = Math.round(b / n);
    }
  }
  return { width: w, height: h, data: out };
}

export function encodePng(img: RgbImage): Buffer {
  return rgbPng(img.width, img.height, img.data);
}

export const THUMB_SIZES = [128, 256, 512] as const;

/**
 * The cached thumbnail of `file` at `size` (made now when missing), or null
 * when the file is not a PNG this decoder reads (serve the original then).
 */
export function thumbnailFor(file: string, size: number, cacheDir: string): string | null {
  if (!/\.png$/i.test(file)) return null;
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch {
    return null;
  }
  const key = createHash('sha1').update(`${file}\0${st.size}\0${st.mtimeMs}\0${size}`).digest('hex');
  const out = path.join(cacheDir, key.slice(0, 2), `${key}.png`);
  if (fs.existsSync(out)) return out;
  const img = decodePng(fs.readFileSync(file));
  if (!img) return null;
  if (Math.max(img.width, img.height) <= size) return file;
  writeFileAtomic(out, encodePng(shrink(img, size)));
  return out;
}
