/**
 * The canvas document: plain data, no React, no Konva. Everything Konva draws
 * and everything sent to the worker is computed from this. Edits are actions
 * that return a new document (structural sharing), so undo is a stack of
 * documents and every edit is undoable.
 */

export interface Point {
  x: number;
  y: number;
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** A stroke or filled shape on the mask or the control layer, in document coordinates. */
export interface Stroke {
  id: string;
  /** paint adds (white), erase removes; fill = a closed polygon (rectangle or lasso). */
  op: 'paint' | 'erase';
  shape: 'line' | 'polygon';
  /** Flat [x0, y0, x1, y1, …]. */
  points: number[];
  size: number;
  /** 0..1: 1 is a hard edge, lower values soften it. */
  hardness: number;
  /** 0..1 */
  opacity: number;
}

export interface ImageLayer {
  id: string;
  kind: 'image';
  name: string;
  /** Where the pixels come from: a history image or an imported asset (library-relative path). */
  src: string;
  x: number;
  y: number;
  width: number;
  height: number;
  visible: boolean;
  opacity: number;
}

export interface MaskLayer {
  strokes: Stroke[];
  /** Invert flips what is repainted and what is kept. */
  inverted: boolean;
  /** Feather (px) applied where the mask meets kept pixels. */
  feather: number;
  visible: boolean;
  /**
   * A mask image (white = repaint, library-relative path) placed in document coordinates, under the
   * strokes: what "Open in canvas" restores from a history entry, whose mask was stored as pixels.
   * Strokes paint and erase on top of it. Absent in documents saved before it existed.
   */
  image?: { src: string; rect: Rect } | null;
}

export interface ControlLayer {
  /** Hand-drawn edges (white on black). */
  strokes: Stroke[];
  /** An edge map derived from an image (library-relative path), placed in document coordinates. */
  edges: { src: string; rect: Rect; low: number; high: number } | null;
  enabled: boolean;
  visible: boolean;
  scale: number;
  start: number;
  end: number;
}

export interface CanvasDocument {
  images: ImageLayer[];
  mask: MaskLayer;
  control: ControlLayer;
  /** The generation frame: what is sent to the worker. Sides are multiples of 8. */
  frame: Rect;
}

export const MIN_FRAME = 64;
export const MAX_FRAME = 4096;

export function emptyDocument(frame: Rect = { x: 0, y: 0, width: 512, height: 512 }): CanvasDocument {
  return {
    images: [],
    mask: { strokes: [], inverted: false, feather: 8, visible: true, image: null },
    control: { strokes: [], edges: null, enabled: false, visible: true, scale: 1, start: 0, end: 1 },
    frame,
  };
}
