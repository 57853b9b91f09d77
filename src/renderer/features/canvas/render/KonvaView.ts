/**
 * Konva rendering of the canvas document, one module with destroy(). Data is
 * pushed into Konva from the editor and never read back. Layers are separate
 * canvases, so a stroke in progress redraws only the small buffer layer.
 */
import Konva from 'konva';
import type { CanvasEditor } from '../document/editor';
import type { ImageLayer, Stroke } from '../document/types';
import { luminanceToAlpha } from './rasterize';

const MASK_RGB: [number, number, number] = [255, 80, 120];
const MASK_TINT = `rgba(${MASK_RGB.join(', ')}, 1)`;
const CONTROL_TINT = 'rgba(80, 220, 255, 1)';

function lineFor(s: Stroke, color: string): Konva.Shape {
  const common = {
    points: s.points,
    globalCompositeOperation: (s.op === 'erase' ? 'destination-out' : 'source-over') as GlobalCompositeOperation,
    opacity: s.opacity,
    listening: false,
    perfectDrawEnabled: false,
  };
  if (s.shape === 'polygon') return new Konva.Line({ ...common, closed: true, fill: color });
  const soft = (1 - s.hardness) * s.size * 0.5;
  return new Konva.Line({
    ...common,
    stroke: color,
    strokeWidth: Math.max(1, s.size - 2 * soft),
    lineCap: 'round',
    lineJoin: 'round',
    shadowColor: color,
    shadowBlur: soft * 2,
    shadowEnabled: soft > 0.5,
  });
}

export class KonvaView {
  readonly stage: Konva.Stage;
  private world: Konva.Layer[];
  private imagesLayer = new Konva.Layer({ listening: false });
  private maskLayer = new Konva.Layer({ listening: false, opacity: 0.45 });
  private controlLayer = new Konva.Layer({ listening: false, opacity: 0.8 });
  private stagingLayer = new Konva.Layer({ listening: false });
  private bufferLayer = new Konva.Layer({ listening: false, opacity: 0.45 });
  private overlay = new Konva.Layer({ listening: false });
  private frameRect = new Konva.Rect({ stroke: '#7c9cff', dash: [8, 6], strokeScaleEnabled: false, strokeWidth: 1.5 });
  private frameLabel = new Konva.Text({ fill: '#7c9cff', fontSize: 12, fontFamily: 'system-ui, sans-serif' });
  private cursor = new Konva.Circle({ stroke: '#fff', strokeWidth: 1, strokeScaleEnabled: false, visible: false, shadowColor: '#000', shadowBlur: 2 });
  private bufferShape: Konva.Shape | null = null;
  private bufferPoints = -1;
  private drawnMask: string[] = [];
  private drawnControl: string[] = [];
  private imageNodes = new Map<string, Konva.Image>();
  private bitmaps = new Map<string, Promise<HTMLImageElement>>();
  private stagedNode = new Konva.Image({ image: undefined, listening: false, visible: false });
  private unsubscribe: () => void;
  private lastDoc: unknown = null;
  private lastEdges: string | null = null;
  private lastMaskImage: string | null = null;

  constructor(
    container: HTMLDivElement,
    private editor: CanvasEditor,
    private fileUrl: (rel: string) => string,
  ) {
    this.stage = new Konva.Stage({ container, width: container.clientWidth, height: container.clientHeight });
    this.overlay.add(this.frameRect, this.frameLabel, this.cursor);
    this.stagingLayer.add(this.stagedNode);
    this.world = [this.imagesLayer, this.stagingLayer, this.maskLayer, this.controlLayer, this.bufferLayer, this.overlay];
    for (const l of this.world) this.stage.add(l);
    this.unsubscribe = editor.subscribe(() => this.sync());
    this.sync();
  }

  image(src: string): Promise<HTMLImageElement> {
    let p = this.bitmaps.get(src);
    if (!p) {
      p = new Promise((resolve, reject) => {
        const img = new Image();
        img.onload = () => resolve(img);
        img.onerror = () => reject(new Error(`could not load ${src}`));
        img.src = this.fileUrl(src);
      });
      this.bitmaps.set(src, p);
    }
    return p;
  }

  resize(width: number, height: number): void {
    this.stage.size({ width, height });
  }

  setCursor(screen: { x: number; y: number } | null): void {
    const ed = this.editor;
    const painting = ed.tool === 'brush' || ed.tool === 'eraser' || ed.tool === 'pen';
    if (!screen || !painting || ed.spaceHeld) {
      if (this.cursor.visible()) {
        this.cursor.visible(false);
        this.overlay.batchDraw();
      }
      return;
    }
    const p = ed.toDoc(screen);
    this.cursor.setAttrs({ x: p.x, y: p.y, radius: (ed.tool === 'pen' ? Math.max(1, Math.round(ed.brush.size / 8)) : ed.brush.size) / 2, visible: true });
    this.overlay.batchDraw();
  }

  /** Show a staged result over the frame; the mask hides meanwhile so the result reads clearly. */
  setStaged(src: string | null): void {
    this.maskLayer.visible(!src && this.editor.doc.mask.visible);
    this.maskLayer.batchDraw();
    if (!src) {
      this.stagedNode.visible(false);
      this.stagingLayer.batchDraw();
      return;
    }
    const f = this.editor.doc.frame;
    void this.image(src).then((img) => {
      this.stagedNode.setAttrs({ image: img, x: f.x, y: f.y, width: f.width, height: f.height, visible: true });
      this.stagingLayer.batchDraw();
    });
  }

  private sync(): void {
    const ed = this.editor;
    const v = ed.view;
    for (const l of this.world) l.setAttrs({ x: v.x, y: v.y, scaleX: v.scale, scaleY: v.scale });
    const doc = ed.doc;
    if (doc !== this.lastDoc) {
      this.lastDoc = doc;
      this.syncImages(doc.images);
      this.syncMaskImage();
      this.syncStrokes(this.maskLayer, doc.mask.strokes, this.drawnMask, MASK_TINT);
      this.maskLayer.visible(doc.mask.visible && !this.stagedNode.visible());
      this.syncControl();
      const f = doc.frame;
      this.frameRect.setAttrs(f);
      this.frameLabel.setAttrs({ x: f.x, y: f.y - 16 / v.scale, text: `${f.width} × ${f.height}`, scaleX: 1 / v.scale, scaleY: 1 / v.scale });
    }
    this.frameLabel.setAttrs({ y: doc.frame.y - 16 / v.scale, scaleX: 1 / v.scale, scaleY: 1 / v.scale });
    this.syncBuffer();
    this.stage.batchDraw();
  }

  private syncImages(layers: ImageLayer[]): void {
    const keep = new Set(layers.map((l) => l.id));
    for (const [id, node] of this.imageNodes) {
      if (!keep.has(id)) {
        node.destroy();
        this.imageNodes.delete(id);
      }
    }
    layers.forEach((l, z) => {
      let node = this.imageNodes.get(l.id);
      if (!node) {
        node = new Konva.Image({ image: undefined, listening: false });
        this.imageNodes.set(l.id, node);
        this.imagesLayer.add(node);
        void this.image(l.src).then((img) => {
          node!.image(img);
          this.imagesLayer.batchDraw();
        });
      }
      node.x(l.x).y(l.y).width(l.width).height(l.height).visible(l.visible).opacity(l.opacity);
      node.zIndex(z);
    });
  }

  /**
   * Append new strokes; rebuild only when strokes were removed (undo, clear). The layer's image
   * (edge map, restored mask) is not a stroke and stays.
   */
  private syncStrokes(layer: Konva.Layer, strokes: Stroke[], drawn: string[], color: string): void {
    const prefixOk = drawn.length <= strokes.length && drawn.every((id, i) => strokes[i].id === id);
    if (!prefixOk) {
      for (const node of layer.getChildren().slice()) if (!(node instanceof Konva.Image)) node.destroy();
      drawn.length = 0;
    }
    for (let i = drawn.length; i < strokes.length; i++) {
      layer.add(lineFor(strokes[i], color));
      drawn.push(strokes[i].id);
    }
  }

  /** A restored mask image, tinted like painted strokes, under them (erase strokes cut it). */
  private syncMaskImage(): void {
    const m = this.editor.doc.mask.image ?? null;
    const key = m ? `${m.src}@${JSON.stringify(m.rect)}` : null;
    if (key === this.lastMaskImage) return;
    this.lastMaskImage = key;
    for (const node of this.maskLayer.getChildren().slice()) if (node instanceof Konva.Image) node.destroy();
    if (!m) return;
    const node = new Konva.Image({ image: undefined, x: m.rect.x, y: m.rect.y, width: m.rect.width, height: m.rect.height, listening: false });
    this.maskLayer.add(node);
    node.moveToBottom();
    void this.image(m.src).then((img) => {
      if (this.lastMaskImage !== key) return;
      node.image(luminanceToAlpha(img, m.rect.width, m.rect.height, MASK_RGB));
      this.maskLayer.batchDraw();
    });
  }

  private syncControl(): void {
    const c = this.editor.doc.control;
    const edgesKey = c.edges ? `${c.edges.src}@${JSON.stringify(c.edges.rect)}` : null;
    if (edgesKey !== this.lastEdges) {
      this.lastEdges = edgesKey;
      this.controlLayer.destroyChildren();
      this.drawnControl.length = 0;
      if (c.edges) {
        const e = c.edges;
        const node = new Konva.Image({ image: undefined, x: e.rect.x, y: e.rect.y, width: e.rect.width, height: e.rect.height, listening: false, globalCompositeOperation: 'lighten' });
        this.controlLayer.add(node);
        void this.image(e.src).then((img) => {
          node.image(img);
          node.moveToBottom();
          this.controlLayer.batchDraw();
        });
      }
    }
    this.syncStrokes(this.controlLayer, c.strokes, this.drawnControl, CONTROL_TINT);
    this.controlLayer.visible(c.visible && c.enabled);
  }

  private syncBuffer(): void {
    const b = this.editor.buffer;
    if (!b) {
      if (this.bufferShape) {
        this.bufferShape.destroy();
        this.bufferShape = null;
        this.bufferPoints = -1;
      }
      return;
    }
    if (!this.bufferShape) {
      this.bufferShape = lineFor(b, this.editor.tool === 'pen' ? CONTROL_TINT : MASK_TINT);
      this.bufferLayer.add(this.bufferShape);
    }
    if (b.points.length !== this.bufferPoints) {
      (this.bufferShape as Konva.Line).points(b.points.slice());
      this.bufferPoints = b.points.length;
    }
  }

  destroy(): void {
    this.unsubscribe();
    this.stage.destroy();
  }
}
