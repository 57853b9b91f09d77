/**
 * The headless canvas editor: document + undo history + view + tools. Pointer
 * and key events go in (in screen coordinates), document edits come out. Konva
 * only renders what this holds; tests drive it with pointer sequences.
 *
 * A stroke in progress lives in `buffer` and becomes plain data (one undoable
 * edit) on pointer-up, as InvokeAI's canvas does.
 */
import { handleAt, normalizeRect, resizeRect, snapFrame, type Handle } from './geometry';
import { emptyDocument, type CanvasDocument, type ImageLayer, type Point, type Rect, type Stroke } from './types';

export type ToolName = 'move' | 'brush' | 'eraser' | 'rect' | 'lasso' | 'frame' | 'pen';
export interface View {
  x: number; // screen position of document origin
  y: number;
  scale: number;
}
export interface BrushSettings {
  size: number;
  hardness: number;
  opacity: number;
}
export interface Modifiers {
  shift?: boolean;
  alt?: boolean;
  ctrl?: boolean;
  meta?: boolean;
}

const MAX_HISTORY = 200;
export const MIN_ZOOM = 0.05;
export const MAX_ZOOM = 32;
let idSeq = 0;
export const newId = (prefix: string) => `${prefix}-${Date.now().toString(36)}-${(++idSeq).toString(36)}`;

type Drag =
  | { kind: 'pan'; start: Point; view: View }
  | { kind: 'stroke'; target: 'mask' | 'control' }
  | { kind: 'rect'; start: Point; op: Stroke['op'] }
  | { kind: 'lasso'; op: Stroke['op'] }
  | { kind: 'frame-move'; start: Point; frame: Rect }
  | { kind: 'frame-resize'; start: Point; frame: Rect; handle: Handle };

export class CanvasEditor {
  doc: CanvasDocument;
  view: View = { x: 0, y: 0, scale: 1 };
  tool: ToolName = 'brush';
  brush: BrushSettings = { size: 48, hardness: 0.8, opacity: 1 };
  /** The stroke or selection being drawn right now (not in the document yet). */
  buffer: Stroke | null = null;
  /** Space held: the pointer pans whatever the tool. */
  spaceHeld = false;
  private past: CanvasDocument[] = [];
  private future: CanvasDocument[] = [];
  private drag: Drag | null = null;
  private listeners = new Set<() => void>();

  constructor(doc: CanvasDocument = emptyDocument()) {
    this.doc = doc;
  }

  // -------------------------------------------------------------- plumbing

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(): void {
    for (const l of this.listeners) l();
  }

  /** Apply an edit as one undoable step. Returns false when it changed nothing. */
  commit(edit: (doc: CanvasDocument) => CanvasDocument): boolean {
    const next = edit(this.doc);
    if (next === this.doc) return false;
    this.past.push(this.doc);
    if (this.past.length > MAX_HISTORY) this.past.shift();
    this.future = [];
    this.doc = next;
    this.notify();
    return true;
  }

  get canUndo(): boolean {
    return this.past.length > 0;
  }
  get canRedo(): boolean {
    return this.future.length > 0;
  }

  undo(): void {
    const prev = this.past.pop();
    if (!prev) return;
    this.future.push(this.doc);
    this.doc = prev;
    this.notify();
  }

  redo(): void {
    const next = this.future.pop();
    if (!next) return;
    this.past.push(this.doc);
    this.doc = next;
    this.notify();
  }

  setTool(tool: ToolName): void {
    this.tool = tool;
    this.notify();
  }

  setBrush(patch: Partial<BrushSettings>): void {
    const b = { ...this.brush, ...patch };
    this.brush = { size: Math.min(1000, Math.max(1, Math.round(b.size))), hardness: clamp01(b.hardness), opacity: clamp01(b.opacity) };
    this.notify();
  }

  // ------------------------------------------------------------------ view

  toDoc(p: Point): Point {
    return { x: (p.x - this.view.x) / this.view.scale, y: (p.y - this.view.y) / this.view.scale };
  }

  /** Zoom about a screen point (the cursor), keeping the document point under it fixed. */
  zoomAt(screen: Point, factor: number): void {
    const scale = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, this.view.scale * factor));
    const d = this.toDoc(screen);
    this.view = { scale, x: screen.x - d.x * scale, y: screen.y - d.y * scale };
    this.notify();
  }

  /** Fit a document rect (default: the frame and every image) into a viewport with a margin. */
  fit(viewport: { width: number; height: number }, rect: Rect = this.contentBounds(), margin = 40): void {
    const scale = Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, Math.min((viewport.width - 2 * margin) / rect.width, (viewport.height - 2 * margin) / rect.height)));
    this.view = { scale, x: (viewport.width - rect.width * scale) / 2 - rect.x * scale, y: (viewport.height - rect.height * scale) / 2 - rect.y * scale };
    this.notify();
  }

  /** 100%: one document pixel per screen pixel, centred on the frame. */
  actualSize(viewport: { width: number; height: number }): void {
    const f = this.doc.frame;
    this.view = { scale: 1, x: viewport.width / 2 - (f.x + f.width / 2), y: viewport.height / 2 - (f.y + f.height / 2) };
    this.notify();
  }

  contentBounds(): Rect {
    const rects = [this.doc.frame, ...this.doc.images.filter((l) => l.visible)];
    const x0 = Math.min(...rects.map((r) => r.x));
    const y0 = Math.min(...rects.map((r) => r.y));
    const x1 = Math.max(...rects.map((r) => r.x + r.width));
    const y1 = Math.max(...rects.map((r) => r.y + r.height));
    return { x: x0, y: y0, width: x1 - x0, height: y1 - y0 };
  }

  // --------------------------------------------------------------- pointer

  pointerDown(screen: Point, opts: { button?: number } & Modifiers = {}): void {
    const p = this.toDoc(screen);
    if (opts.button === 1 || this.spaceHeld || this.tool === 'move') {
      this.drag = { kind: 'pan', start: screen, view: { ...this.view } };
      return;
    }
    const op: Stroke['op'] = opts.alt ? 'erase' : 'paint';
    switch (this.tool) {
      case 'brush':
      case 'eraser':
      case 'pen':
        this.buffer = {
          id: newId('stroke'),
          op: this.tool === 'eraser' ? 'erase' : op,
          shape: 'line',
          points: [p.x, p.y],
          size: this.tool === 'pen' ? Math.max(1, Math.round(this.brush.size / 8)) : this.brush.size,
          hardness: this.tool === 'pen' ? 1 : this.brush.hardness,
          opacity: this.tool === 'pen' ? 1 : this.brush.opacity,
        };
        this.drag = { kind: 'stroke', target: this.tool === 'pen' ? 'control' : 'mask' };
        break;
      case 'rect':
        this.drag = { kind: 'rect', start: p, op };
        this.buffer = { id: newId('rect'), op, shape: 'polygon', points: [p.x, p.y, p.x, p.y, p.x, p.y, p.x, p.y], size: 0, hardness: 1, opacity: 1 };
        break;
      case 'lasso':
        this.drag = { kind: 'lasso', op };
        this.buffer = { id: newId('lasso'), op, shape: 'polygon', points: [p.x, p.y], size: 0, hardness: 1, opacity: 1 };
        break;
      case 'frame': {
        const handle = handleAt(this.doc.frame, p, 8 / this.view.scale);
        this.drag = handle ? { kind: 'frame-resize', start: p, frame: this.doc.frame, handle } : { kind: 'frame-move', start: p, frame: this.doc.frame };
        break;
      }
    }
    this.notify();
  }

  pointerMove(screen: Point): void {
    const d = this.drag;
    if (!d) return;
    const p = this.toDoc(screen);
    if (d.kind === 'pan') {
      this.view = { ...d.view, x: d.view.x + screen.x - d.start.x, y: d.view.y + screen.y - d.start.y };
    } else if (d.kind === 'stroke' && this.buffer) {
      const pts = this.buffer.points;
      // Skip sub-pixel moves: they add points without changing the stroke.
      const lx = pts[pts.length - 2];
      const ly = pts[pts.length - 1];
      if (Math.hypot(p.x - lx, p.y - ly) < 0.5) return;
      pts.push(p.x, p.y);
    } else if (d.kind === 'rect' && this.buffer) {
      const r = normalizeRect(d.start, p);
      this.buffer.points = [r.x, r.y, r.x + r.width, r.y, r.x + r.width, r.y + r.height, r.x, r.y + r.height];
    } else if (d.kind === 'lasso' && this.buffer) {
      this.buffer.points.push(p.x, p.y);
    } else if (d.kind === 'frame-move') {
      // Live: the frame follows the pointer; the edit is committed once on pointer-up.
      this.doc = { ...this.doc, frame: { ...d.frame, x: Math.round(d.frame.x + p.x - d.start.x), y: Math.round(d.frame.y + p.y - d.start.y) } };
    } else if (d.kind === 'frame-resize') {
      this.doc = { ...this.doc, frame: resizeRect(d.frame, d.handle, p.x - d.start.x, p.y - d.start.y) };
    }
    this.notify();
  }

  pointerUp(): void {
    const d = this.drag;
    this.drag = null;
    const stroke = this.buffer;
    this.buffer = null;
    if (!d) return;
    if ((d.kind === 'frame-move' || d.kind === 'frame-resize') && this.doc.frame !== d.frame) {
      const moved = this.doc.frame;
      this.doc = { ...this.doc, frame: d.frame }; // restore, then commit as one edit
      this.setFrame(moved);
      return;
    }
    if (stroke) {
      if (d.kind === 'stroke') {
        // A click without movement is a dot.
        if (stroke.points.length === 2) stroke.points.push(stroke.points[0] + 0.01, stroke.points[1]);
        this.addStroke(d.target, stroke);
        return;
      }
      const box = polygonArea(stroke.points);
      if (Math.abs(box) >= 1 && stroke.points.length >= 6) this.addStroke('mask', stroke);
    }
    this.notify();
  }

  // --------------------------------------------------------------- actions

  addStroke(target: 'mask' | 'control', stroke: Stroke): void {
    this.commit((doc) =>
      target === 'mask' ? { ...doc, mask: { ...doc.mask, strokes: [...doc.mask.strokes, stroke] } } : { ...doc, control: { ...doc.control, strokes: [...doc.control.strokes, stroke], enabled: true } },
    );
  }

  clearMask(): void {
    this.commit((doc) => (doc.mask.strokes.length || doc.mask.inverted || doc.mask.image ? { ...doc, mask: { ...doc.mask, strokes: [], inverted: false, image: null } } : doc));
  }

  invertMask(): void {
    this.commit((doc) => ({ ...doc, mask: { ...doc.mask, inverted: !doc.mask.inverted } }));
  }

  setFeather(feather: number): void {
    const f = Math.max(0, Math.min(256, Math.round(feather)));
    this.commit((doc) => (doc.mask.feather === f ? doc : { ...doc, mask: { ...doc.mask, feather: f } }));
  }

  setFrame(rect: Rect): void {
    const f = snapFrame(rect);
    this.commit((doc) => (sameRect(doc.frame, f) ? doc : { ...doc, frame: f }));
  }

  addImage(layer: Omit<ImageLayer, 'id' | 'kind' | 'visible' | 'opacity'> & Partial<Pick<ImageLayer, 'visible' | 'opacity'>>): ImageLayer {
    const full: ImageLayer = { id: newId('image'), kind: 'image', visible: true, opacity: 1, ...layer };
    this.commit((doc) => ({ ...doc, images: [...doc.images, full] }));
    return full;
  }

  removeImage(id: string): void {
    this.commit((doc) => (doc.images.some((l) => l.id === id) ? { ...doc, images: doc.images.filter((l) => l.id !== id) } : doc));
  }

  setControl(patch: Partial<CanvasDocument['control']>): void {
    this.commit((doc) => ({ ...doc, control: { ...doc.control, ...patch } }));
  }

  clearControl(): void {
    this.commit((doc) => (doc.control.strokes.length || doc.control.edges ? { ...doc, control: { ...doc.control, strokes: [], edges: null, enabled: false } } : doc));
  }

  // ------------------------------------------------------------------ keys

  /** Artists' shortcuts. Returns true when the key was handled. */
  keyDown(key: string, mods: Modifiers = {}): boolean {
    const mod = mods.ctrl || mods.meta;
    const k = key.length === 1 ? key.toLowerCase() : key;
    if (mod && k === 'z') {
      if (mods.shift) this.redo();
      else this.undo();
      return true;
    }
    if (mod && k === 'y') {
      this.redo();
      return true;
    }
    if (mod) return false;
    switch (k) {
      case 'b':
        this.setTool('brush');
        return true;
      case 'e':
        this.setTool('eraser');
        return true;
      case 'v':
        this.setTool('move');
        return true;
      case 'm':
        this.setTool('rect');
        return true;
      case 'l':
        this.setTool('lasso');
        return true;
      case 'f':
        this.setTool('frame');
        return true;
      case 'p':
        this.setTool('pen');
        return true;
      case 'x':
        // Swap paint and erase, as X swaps the colours in image editors.
        this.setTool(this.tool === 'eraser' ? 'brush' : 'eraser');
        return true;
      case '[':
        this.setBrush({ size: this.brush.size / 1.2 });
        return true;
      case ']':
        this.setBrush({ size: this.brush.size * 1.2 });
        return true;
      case ' ':
        this.spaceHeld = true;
        return true;
      default:
        return false;
    }
  }

  keyUp(key: string): void {
    if (key === ' ') this.spaceHeld = false;
  }
}

function clamp01(v: number): number {
  return Math.min(1, Math.max(0, Number.isFinite(v) ? v : 1));
}

function sameRect(a: Rect, b: Rect): boolean {
  return a.x === b.x && a.y === b.y && a.width === b.width && a.height === b.height;
}

/** Signed area (shoelace); zero for degenerate selections. */
export function polygonArea(points: number[]): number {
  let a = 0;
  const n = points.length / 2;
  for (let i = 0; i < n; i++) {
    const j = (i + 1) % n;
    a += points[2 * i] * points[2 * j + 1] - points[2 * j] * points[2 * i + 1];
  }
  return a / 2;
}
