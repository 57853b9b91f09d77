import { MAX_FRAME, MIN_FRAME, type Point, type Rect, type Stroke } from './types';

export const snap8 = (v: number) => Math.round(v / 8) * 8;

/** A frame with its sides snapped to multiples of 8 and clamped to what the worker accepts. */
export function snapFrame(r: Rect): Rect {
  const clampSide = (v: number) => Math.min(MAX_FRAME, Math.max(MIN_FRAME, snap8(Math.abs(v))));
  return { x: Math.round(r.x), y: Math.round(r.y), width: clampSide(r.width), height: clampSide(r.height) };
}

export function normalizeRect(a: Point, b: Point): Rect {
  return { x: Math.min(a.x, b.x), y: Math.min(a.y, b.y), width: Math.abs(a.x - b.x), height: Math.abs(a.y - b.y) };
}

export function intersects(a: Rect, b: Rect): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}

export function contains(r: Rect, p: Point): boolean {
  return p.x >= r.x && p.x <= r.x + r.width && p.y >= r.y && p.y <= r.y + r.height;
}

export function strokeBounds(s: Stroke): Rect {
  let minX = Infinity;
  let minY = Infinity;
  let maxX = -Infinity;
  let maxY = -Infinity;
  for (let i = 0; i < s.points.length; i += 2) {
    minX = Math.min(minX, s.points[i]);
    maxX = Math.max(maxX, s.points[i]);
    minY = Math.min(minY, s.points[i + 1]);
    maxY = Math.max(maxY, s.points[i + 1]);
  }
  const pad = s.shape === 'line' ? s.size / 2 : 0;
  return { x: minX - pad, y: minY - pad, width: maxX - minX + 2 * pad, height: maxY - minY + 2 * pad };
}

/** Which resize handle (if any) is under a point, with a tolerance in document units. */
export type Handle = 'nw' | 'ne' | 'sw' | 'se' | 'n' | 's' | 'e' | 'w';
export function handleAt(r: Rect, p: Point, tol: number): Handle | null {
  const L = Math.abs(p.x - r.x) <= tol;
  const R = Math.abs(p.x - (r.x + r.width)) <= tol;
  const T = Math.abs(p.y - r.y) <= tol;
  const B = Math.abs(p.y - (r.y + r.height)) <= tol;
  const inX = p.x >= r.x - tol && p.x <= r.x + r.width + tol;
  const inY = p.y >= r.y - tol && p.y <= r.y + r.height + tol;
  if (T && L) return 'nw';
  if (T && R) return 'ne';
  if (B && L) return 'sw';
  if (B && R) return 'se';
  if (T && inX) return 'n';
  if (B && inX) return 's';
  if (L && inY) return 'w';
  if (R && inY) return 'e';
  return null;
}

export function resizeRect(r: Rect, handle: Handle, dx: number, dy: number): Rect {
  let { x, y, width, height } = r;
  if (handle.includes('w')) {
    x += dx;
    width -= dx;
  }
  if (handle.includes('e')) width += dx;
  if (handle.includes('n')) {
    y += dy;
    height -= dy;
  }
  if (handle.includes('s')) height += dy;
  // Keep the opposite edge fixed while snapping the moving one to a multiple of 8.
  const snapped = snapFrame({ x, y, width, height });
  if (handle.includes('w')) snapped.x = r.x + r.width - snapped.width;
  if (handle.includes('n')) snapped.y = r.y + r.height - snapped.height;
  return snapped;
}
