/**
 * What the worker receives, computed from the document (never read back from
 * Konva): the frame's composite (transparent where the canvas is empty), the
 * mask (white = repaint) and the control image (white edges on black).
 */
import type { CanvasDocument, Rect, Stroke } from '../document/types';

export type ImageSource = (src: string) => Promise<CanvasImageSource>;

function canvas(width: number, height: number): HTMLCanvasElement {
  const c = document.createElement('canvas');
  c.width = width;
  c.height = height;
  return c;
}

/** Draw strokes in white (paint) or cut them out (erase), in document coordinates offset by the frame. */
export function drawStrokes(ctx: CanvasRenderingContext2D, strokes: Stroke[], frame: Rect): void {
  for (const s of strokes) {
    ctx.save();
    ctx.globalCompositeOperation = s.op === 'erase' ? 'destination-out' : 'source-over';
    ctx.globalAlpha = s.opacity;
    const soft = (1 - s.hardness) * s.size * 0.5;
    if (soft > 0.5) ctx.filter = `blur(${soft.toFixed(1)}px)`;
    ctx.fillStyle = '#fff';
    ctx.strokeStyle = '#fff';
    ctx.beginPath();
    const p = s.points;
    ctx.moveTo(p[0] - frame.x, p[1] - frame.y);
    for (let i = 2; i < p.length; i += 2) ctx.lineTo(p[i] - frame.x, p[i + 1] - frame.y);
    if (s.shape === 'polygon') {
      ctx.closePath();
      ctx.fill();
    } else {
      ctx.lineWidth = Math.max(1, s.size - 2 * soft);
      ctx.lineCap = 'round';
      ctx.lineJoin = 'round';
      ctx.stroke();
    }
    ctx.restore();
  }
}

export async function compositeCanvas(doc: CanvasDocument, load: ImageSource): Promise<HTMLCanvasElement> {
  const f = doc.frame;
  const c = canvas(f.width, f.height);
  const ctx = c.getContext('2d')!;
  for (const layer of doc.images) {
    if (!layer.visible) continue;
    ctx.globalAlpha = layer.opacity;
    ctx.drawImage(await load(layer.src), layer.x - f.x, layer.y - f.y, layer.width, layer.height);
  }
  return c;
}

/**
 * A grayscale image (white = 1) as coverage: `rgb` where it is white, transparent where black, so
 * it composes with strokes (which paint and erase alpha) and can be tinted for display.
 */
export function luminanceToAlpha(img: CanvasImageSource, width: number, height: number, rgb: [number, number, number] = [255, 255, 255]): HTMLCanvasElement {
  const c = canvas(width, height);
  const ctx = c.getContext('2d')!;
  ctx.drawImage(img, 0, 0, width, height);
  const data = ctx.getImageData(0, 0, width, height);
  const p = data.data;
  for (let i = 0; i < p.length; i += 4) {
    const a = Math.round((p[i] * 0.299 + p[i + 1] * 0.587 + p[i + 2] * 0.114) * (p[i + 3] / 255));
    p[i] = rgb[0];
    p[i + 1] = rgb[1];
    p[i + 2] = rgb[2];
    p[i + 3] = a;
  }
  ctx.putImageData(data, 0, 0);
  return c;
}

/** Grayscale mask of the frame, or null when nothing is painted (and not inverted). */
export async function maskCanvas(doc: CanvasDocument, load: ImageSource): Promise<HTMLCanvasElement | null> {
  const { mask, frame: f } = doc;
  if (!mask.strokes.length && !mask.image && !mask.inverted) return null;
  const strokes = canvas(f.width, f.height);
  const sctx = strokes.getContext('2d')!;
  if (mask.image) {
    const r = mask.image.rect;
    sctx.drawImage(luminanceToAlpha(await load(mask.image.src), r.width, r.height), r.x - f.x, r.y - f.y);
  }
  drawStrokes(sctx, mask.strokes, f);
  const out = canvas(f.width, f.height);
  const ctx = out.getContext('2d')!;
  ctx.fillStyle = mask.inverted ? '#fff' : '#000';
  ctx.fillRect(0, 0, f.width, f.height);
  if (mask.inverted) ctx.globalCompositeOperation = 'destination-out';
  ctx.drawImage(strokes, 0, 0);
  if (mask.inverted) {
    ctx.globalCompositeOperation = 'destination-over';
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, f.width, f.height);
  }
  return out;
}

export async function controlCanvas(doc: CanvasDocument, load: ImageSource): Promise<HTMLCanvasElement | null> {
  const { control, frame: f } = doc;
  if (!control.enabled || (!control.strokes.length && !control.edges)) return null;
  const out = canvas(f.width, f.height);
  const ctx = out.getContext('2d')!;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, f.width, f.height);
  if (control.edges) {
    const r = control.edges.rect;
    ctx.drawImage(await load(control.edges.src), r.x - f.x, r.y - f.y, r.width, r.height);
  }
  drawStrokes(ctx, control.strokes, f);
  return out;
}

/** True when every pixel of the composite is opaque (the canvas covers the whole frame). */
export function isOpaque(c: HTMLCanvasElement): boolean {
  const data = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 255) return false;
  return true;
}

export function isEmpty(c: HTMLCanvasElement): boolean {
  const data = c.getContext('2d')!.getImageData(0, 0, c.width, c.height).data;
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return false;
  return true;
}

export async function pngBase64(c: HTMLCanvasElement): Promise<string> {
  const blob = await new Promise<Blob>((resolve, reject) => c.toBlob((b) => (b ? resolve(b) : reject(new Error('could not encode PNG'))), 'image/png'));
  const bytes = new Uint8Array(await blob.arrayBuffer());
  let bin = '';
  for (let i = 0; i < bytes.length; i += 0x8000) bin += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(bin);
}
