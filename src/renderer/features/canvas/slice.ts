/**
 * Canvas state in the store: the canvas options that are not document edits
 * (generation settings of the canvas, staging of results). The document and
 * its undo history live in the headless editor (`editorInstance`).
 */
import { GenerateParams, type Generation, type ModelRecord } from '../../../shared/contract';
import type { SliceCreator } from '../../app/store';
import { client } from '../../lib/client';
import { canvasRecord } from '../gallery/recall';
import { backendParams, randomSeed } from '../generate/slice';
import { formatUsd } from '../../../shared/cloud';
import { CanvasEditor } from './document/editor';
import { compositeCanvas, controlCanvas, isEmpty, isOpaque, maskCanvas, pngBase64, type ImageSource } from './render/rasterize';

export const canvasEditor = new CanvasEditor();

export interface CanvasOptions {
  maskOnly: boolean;
  maskPadding: number;
  fill: 'edge' | 'blur' | 'telea' | 'noise';
  controlModelId: string;
  cannyLow: number;
  cannyHigh: number;
}

export interface StagedResult {
  jobId: string;
  generation: Generation;
  index: number;
}

export interface CanvasSlice {
  canvasOptions: CanvasOptions;
  /** Canvas jobs waiting for their result to be staged. */
  canvasJobIds: string[];
  staged: StagedResult | null;
  canvasBusy: boolean;
  setCanvasOption<K extends keyof CanvasOptions>(key: K, value: CanvasOptions[K]): void;
  submitCanvas(load: ImageSource, opts?: { seed?: number }): Promise<void>;
  stageResult(jobId: string, generation: Generation): void;
  acceptStaged(): void;
  discardStaged(): void;
  retryStaged(load: ImageSource): Promise<void>;
  stageIndex(i: number): void;
  sendToCanvas(path: string, width: number, height: number, name: string): void;
  /**
   * A canvas generation's inputs back into the canvas: its frame, the frame's composite as a layer,
   * its mask (as a mask image under any new strokes), the control edges and options, and its
   * parameters into the form.
   */
  openInCanvas(g: Generation, imageIndex?: number): void;
}

export function controlNets(models: ModelRecord[]): ModelRecord[] {
  return models.filter((m) => m.kind === 'controlnet');
}

export const createCanvasSlice: SliceCreator<CanvasSlice> = (set, get) => ({
  canvasOptions: { maskOnly: false, maskPadding: 32, fill: 'edge', controlModelId: '', cannyLow: 100, cannyHigh: 200 },
  canvasJobIds: [],
  staged: null,
  canvasBusy: false,
  setCanvasOption: (key, value) => set((s) => ({ canvasOptions: { ...s.canvasOptions, [key]: value } })),

  /**
   * The frame becomes a generation: nothing under it → txt2img; covered and
   * nothing painted → img2img of the composite; a mask or empty areas → inpaint
   * (empty areas are outpainted).
   */
  submitCanvas: async (load, opts = {}) => {
    const { form, canvasOptions: o, seedLocked } = get();
    const doc = canvasEditor.doc;
    set({ canvasBusy: true });
    try {
      const composite = await compositeCanvas(doc, load);
      const mask = await maskCanvas(doc, load);
      const control = await controlCanvas(doc, load);
      const empty = isEmpty(composite);
      const opaque = !empty && isOpaque(composite);
      const mode = empty ? 'txt2img' : !mask && opaque ? 'img2img' : 'inpaint';
      const put = async (c: HTMLCanvasElement) => (await client.call('assets.put', { png: await pngBase64(c) })).path;
      let controlInputs;
      if (control) {
        const modelId = o.controlModelId || controlNets(get().models)[0]?.id;
        if (!modelId) throw new Error('The control layer is on, but there is no ControlNet in the library: add one, or turn the control layer off.');
        controlInputs = { type: 'canny' as const, modelId, image: await put(control), scale: doc.control.scale, start: doc.control.start, end: doc.control.end };
      }
      const seed = opts.seed ?? form.seed;
      let overBudgetOk = false;
      if (form.backend === 'cloud') {
        if (controlInputs) throw new Error('The control layer is local only: turn it off for the cloud backend.');
        const est = await client.call('cloud.estimate', { model: form.cloudModel, size: form.cloudSize, quality: form.cloudQuality, n: Math.max(1, Math.min(16, form.batch || 1)) });
        if (est.overBudget) {
          overBudgetOk = window.confirm(
            `This edit would cost about ${formatUsd(est.costUsd)} and take this month's cloud spend to ${formatUsd(est.spentThisMonthUsd + est.costUsd)}, past your budget of ${formatUsd(est.budgetUsd)}. Go on?`,
          );
          if (!overBudgetOk) return;
        }
      }
      const params = GenerateParams.parse({
        ...form,
        ...backendParams(form, overBudgetOk),
        seed,
        mode,
        width: doc.frame.width,
        height: doc.frame.height,
        strength: mode === 'inpaint' && form.mode !== 'img2img' ? Math.max(form.strength, 0.99) : form.strength,
        initImageId: undefined,
        canvas:
          mode === 'txt2img'
            ? undefined
            : { frame: doc.frame, init: await put(composite), mask: mask ? await put(mask) : null, maskBlur: doc.mask.feather, maskOnly: o.maskOnly, maskPadding: o.maskPadding, fill: o.fill },
        control: controlInputs,
      });
      const job = await client.call('jobs.submit', params);
      set((s) => ({ canvasJobIds: [...s.canvasJobIds, job.id] }));
      if (!seedLocked && opts.seed === undefined) set((s) => ({ form: { ...s.form, seed: randomSeed() } }));
    } catch (err) {
      get().toast('error', (err as Error).message);
    } finally {
      set({ canvasBusy: false });
    }
  },

  stageResult: (jobId, generation) => {
    if (!get().canvasJobIds.includes(jobId)) return;
    set((s) => ({ canvasJobIds: s.canvasJobIds.filter((id) => id !== jobId), staged: { jobId, generation, index: 0 } }));
  },
  stageIndex: (index) => set((s) => (s.staged ? { staged: { ...s.staged, index } } : s)),
  acceptStaged: () => {
    const st = get().staged;
    if (!st) return;
    const img = st.generation.images[st.index];
    const frame = (st.generation.control as { canvas?: { frame: { x: number; y: number; width: number; height: number } } } | null)?.canvas?.frame ?? canvasEditor.doc.frame;
    canvasEditor.addImage({ name: `seed ${img.seed}`, src: img.path, x: frame.x, y: frame.y, width: frame.width, height: frame.height });
    canvasEditor.clearMask();
    set({ staged: null });
  },
  discardStaged: () => set({ staged: null }),
  retryStaged: async (load) => {
    set({ staged: null });
    await get().submitCanvas(load, { seed: randomSeed() });
  },
  openInCanvas: (g, imageIndex = 0) => {
    const rec = canvasRecord(g);
    get().restoreFrom(g, imageIndex, { quiet: true });
    if (!rec) {
      set({ route: 'canvas' });
      return;
    }
    const c = rec.canvas;
    const ctl = rec.control;
    const frame = c?.frame ?? { x: 0, y: 0, width: g.width, height: g.height };
    if (c) canvasEditor.addImage({ name: `inputs of seed ${g.images[imageIndex]?.seed ?? g.seed}`, src: c.init, x: frame.x, y: frame.y, width: frame.width, height: frame.height });
    canvasEditor.commit((doc) => ({
      ...doc,
      frame,
      mask: { ...doc.mask, strokes: [], inverted: false, feather: c?.maskBlur ?? doc.mask.feather, image: c?.mask ? { src: c.mask, rect: frame } : null, visible: true },
      control: ctl ? { ...doc.control, strokes: [], edges: { src: ctl.image, rect: frame, low: 100, high: 200 }, enabled: true, scale: ctl.scale, start: ctl.start, end: ctl.end } : doc.control,
    }));
    set((s) => ({
      route: 'canvas',
      form: { ...s.form, strength: g.strength ?? s.form.strength },
      canvasOptions: { ...s.canvasOptions, ...(c ? { maskOnly: c.maskOnly, maskPadding: c.maskPadding, fill: c.fill } : {}), ...(ctl ? { controlModelId: ctl.modelId } : {}) },
    }));
    get().toast('info', `Restored into the canvas: frame${c ? ', canvas' : ''}${c?.mask ? ', mask' : ''}${ctl ? ', control edges' : ''} and settings.`);
  },
  sendToCanvas: (path, width, height, name) => {
    const doc = canvasEditor.doc;
    const fresh = doc.images.length === 0;
    const f = doc.frame;
    canvasEditor.addImage({ name, src: path, x: fresh ? 0 : f.x, y: fresh ? 0 : f.y, width, height });
    if (fresh) canvasEditor.setFrame({ x: 0, y: 0, width, height });
    set({ route: 'canvas' });
  },
});
