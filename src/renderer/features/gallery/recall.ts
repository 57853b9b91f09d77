/**
 * Pure helpers of the gallery and of recall (no store, no DOM, no client):
 * a history entry back into generation parameters, a dropped PNG's metadata
 * into the form, the virtual grid's arithmetic, date ranges, counts and the
 * selection's export.
 */
import {
  CanvasInputs,
  ControlInputs,
  GenerateParams,
  MAX_SEED,
  SAMPLERS,
  type Generation,
  type ImageMetadata,
  type LoraUse,
  type Sampler,
} from '../../../shared/contract';

// ------------------------------------------------------------ history → params

export interface CanvasRecord {
  canvas: CanvasInputs | null;
  control: ControlInputs | null;
}

/** The canvas and control inputs a canvas generation was made with (`Generation.control`), validated. */
export function canvasRecord(g: Pick<Generation, 'control'>): CanvasRecord | null {
  const c = g.control as { canvas?: unknown; control?: unknown } | null;
  if (!c || typeof c !== 'object') return null;
  const canvas = c.canvas ? CanvasInputs.safeParse(c.canvas) : null;
  const control = c.control ? ControlInputs.safeParse(c.control) : null;
  const rec = { canvas: canvas?.success ? canvas.data : null, control: control?.success ? control.data : null };
  return rec.canvas || rec.control ? rec : null;
}

export function isSampler(s: unknown): s is Sampler {
  return typeof s === 'string' && (SAMPLERS as readonly string[]).includes(s);
}

/** Seed + k, wrapping inside the uint32 range. */
export function offsetSeed(seed: number, k: number): number {
  return (((seed + k) % (MAX_SEED + 1)) + (MAX_SEED + 1)) % (MAX_SEED + 1);
}

/**
 * The request that makes image `imageIndex` of a history entry again (batch 1, that image's seed),
 * with its LoRAs, canvas and control inputs; or why it cannot be made again.
 */
export function paramsFromGeneration(
  g: Generation,
  opts: { imageIndex?: number; seed?: number; noCache?: boolean } = {},
): { params: GenerateParams; error: null } | { params: null; error: string } {
  if (!g.modelId) return { params: null, error: `The model "${g.modelName}" is no longer in the library.` };
  const lost = g.loras.filter((l) => !l.modelId);
  if (lost.length) return { params: null, error: `Not in the library any more: ${lost.map((l) => `LoRA "${l.name}"`).join(', ')}.` };
  if (!isSampler(g.sampler)) return { params: null, error: `The sampler "${g.sampler}" is not one Atelier has.` };
  const img = g.images[opts.imageIndex ?? 0];
  const rec = canvasRecord(g);
  const mode = g.mode === 'img2img' || g.mode === 'inpaint' ? g.mode : 'txt2img';
  const initImageId = mode === 'img2img' && !rec?.canvas ? (img?.parentImageId ?? undefined) : undefined;
  const parsed = GenerateParams.safeParse({
    mode,
    prompt: g.prompt,
    negativePrompt: g.negativePrompt,
    modelId: g.modelId,
    sampler: g.sampler,
    steps: g.steps,
    cfg: g.cfg,
    seed: opts.seed ?? img?.seed ?? g.seed,
    width: g.width,
    height: g.height,
    batch: 1,
    strength: g.strength ?? 0.75,
    initImageId,
    canvas: rec?.canvas ?? undefined,
    control: rec?.control ?? undefined,
    loras: g.loras.map((l) => ({ modelId: l.modelId!, weight: l.weight })),
    noCache: opts.noCache ?? false,
  });
  if (!parsed.success) {
    const i = parsed.error.issues[0];
    return { params: null, error: `This entry cannot be made again: ${i.path.join('.') || 'request'} ${i.message}.` };
  }
  return { params: parsed.data, error: null };
}

/** N variations of an image: the same request with seeds seed+1 … seed+N. */
export function variationParams(g: Generation, imageIndex: number, n: number): { params: GenerateParams[]; error: string | null } {
  const base = g.images[imageIndex]?.seed ?? g.seed;
  const out: GenerateParams[] = [];
  for (let k = 1; k <= n; k++) {
    const r = paramsFromGeneration(g, { imageIndex, seed: offsetSeed(base, k) });
    if (r.error !== null) return { params: [], error: r.error };
    out.push(r.params);
  }
  return { params: out, error: null };
}

// --------------------------------------------------------- dropped PNG → form

export interface FormPatch {
  prompt?: string;
  negativePrompt?: string;
  modelId?: string;
  sampler?: Sampler;
  steps?: number;
  cfg?: number;
  seed?: number;
  width?: number;
  height?: number;
  strength?: number;
  loras?: LoraUse[];
}

export const SOURCE_LABEL: Record<ImageMetadata['source'], string> = { atelier: 'Atelier', a1111: 'A1111', comfyui: 'ComfyUI', none: 'no metadata' };

const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v)) ? Number(v) : null);

/**
 * What the form takes from a dropped PNG's metadata: every value the form can hold, checked
 * against the contract's ranges; what it cannot take is added to the notes.
 */
export function formFromMetadata(meta: ImageMetadata): { patch: FormPatch; restored: string[]; notes: string[] } {
  const p = meta.params;
  const patch: FormPatch = {};
  const restored: string[] = [];
  const notes = [...meta.notes];
  if (typeof p.prompt === 'string' && p.prompt.trim()) {
    patch.prompt = p.prompt;
    restored.push('prompt');
  }
  if (typeof p.negativePrompt === 'string') {
    patch.negativePrompt = p.negativePrompt;
    if (p.negativePrompt) restored.push('negative prompt');
  }
  if (meta.modelId) {
    patch.modelId = meta.modelId;
    restored.push('model');
  }
  if (p.sampler !== undefined) {
    if (isSampler(p.sampler)) {
      patch.sampler = p.sampler;
      restored.push('sampler');
    } else notes.push(`The sampler "${String(p.sampler)}" is not one Atelier has; the current sampler is kept.`);
  }
  const steps = num(p.steps);
  if (steps !== null) {
    if (Number.isInteger(steps) && steps >= 1 && steps <= 200) {
      patch.steps = steps;
      restored.push('steps');
    } else notes.push(`${steps} steps is outside 1–200; the current steps are kept.`);
  }
  const cfg = num(p.cfg);
  if (cfg !== null) {
    if (cfg >= 0 && cfg <= 30) {
      patch.cfg = cfg;
      restored.push('CFG');
    } else notes.push(`CFG ${cfg} is outside 0–30; the current CFG is kept.`);
  }
  const seed = num(p.seed);
  if (seed !== null) {
    if (Number.isInteger(seed) && seed >= 0 && seed <= MAX_SEED) {
      patch.seed = seed;
      restored.push('seed');
    } else notes.push(`The seed ${seed} is outside Atelier's range (0–${MAX_SEED}); the current seed is kept.`);
  }
  const w = num(p.width);
  const h = num(p.height);
  if (w !== null && h !== null) {
    const ok = (v: number) => Number.isInteger(v) && v >= 64 && v <= 4096 && v % 8 === 0;
    if (ok(w) && ok(h)) {
      patch.width = w;
      patch.height = h;
      restored.push('size');
    } else notes.push(`The size ${w}×${h} is not one Atelier can generate (multiples of 8, 64–4096); the current size is kept.`);
  }
  const strength = num(p.strength);
  if (strength !== null && strength >= 0 && strength <= 1 && p.mode !== undefined && p.mode !== 'txt2img') {
    patch.strength = strength;
    restored.push('strength');
  }
  if (typeof p.mode === 'string' && p.mode !== 'txt2img') notes.push(`It was made with ${p.mode}; the starting image is not in the PNG, so the settings were restored as text to image.`);
  const loras: LoraUse[] = [];
  for (const l of meta.loras) if (l.modelId && !loras.some((x) => x.modelId === l.modelId)) loras.push({ modelId: l.modelId, weight: Math.max(-4, Math.min(4, l.weight)) });
  if (meta.loras.length || meta.source !== 'none') patch.loras = loras;
  if (loras.length) restored.push(loras.length === 1 ? '1 LoRA' : `${loras.length} LoRAs`);
  return { patch, restored, notes };
}

// -------------------------------------------------------------- virtual grid

export interface GridLayout {
  cols: number;
  /** Side of a (square) cell in px. */
  cell: number;
  gap: number;
  /** Row height + gap. */
  pitch: number;
}

/** Columns that fit `width` with cells at least `minCell` wide, stretched to fill the row. */
export function gridLayout(width: number, minCell = 150, gap = 8): GridLayout {
  const w = Math.max(minCell, width);
  const cols = Math.max(1, Math.floor((w + gap) / (minCell + gap)));
  const cell = Math.floor((w - gap * (cols - 1)) / cols);
  return { cols, cell, gap, pitch: cell + gap };
}

/** The rows (and item indices) in or near the viewport. */
export function visibleRange(scrollTop: number, viewport: number, layout: GridLayout, count: number, overscanRows = 2): { firstRow: number; lastRow: number; start: number; end: number } {
  const rows = Math.ceil(count / layout.cols);
  const firstRow = Math.max(0, Math.floor(scrollTop / layout.pitch) - overscanRows);
  const lastRow = Math.min(rows - 1, Math.ceil((scrollTop + Math.max(viewport, 1)) / layout.pitch) + overscanRows);
  return { firstRow, lastRow, start: firstRow * layout.cols, end: Math.min(count, (lastRow + 1) * layout.cols) };
}

/** Where focus goes from `index` on an arrow key (or Home/End), in a grid of `cols` columns. */
export function moveFocus(index: number, key: string, cols: number, count: number, pageRows = 3): number {
  if (count <= 0) return -1;
  if (index < 0) return 0;
  const d: Record<string, number> = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -cols, ArrowDown: cols, PageUp: -cols * pageRows, PageDown: cols * pageRows };
  if (key === 'Home') return 0;
  if (key === 'End') return count - 1;
  const next = index + (d[key] ?? 0);
  return Math.max(0, Math.min(count - 1, next));
}

/** Ids of the loaded items between two indices (inclusive, either order). */
export function rangeIds(items: readonly (Generation | undefined)[], a: number, b: number): string[] {
  const out: string[] = [];
  for (let i = Math.max(0, Math.min(a, b)); i <= Math.min(items.length - 1, Math.max(a, b)); i++) {
    const g = items[i];
    if (g) out.push(g.id);
  }
  return out;
}

/** Where the next page should start to fill the holes in [start, end): a hole run bounded below by loaded items is fetched upward. */
export function holesToFetch(items: readonly (Generation | undefined)[], start: number, end: number, page: number, inflight: readonly [number, number][]): number[] {
  const offsets: number[] = [];
  const covered = (i: number) => inflight.some(([a, b]) => i >= a && i < b) || offsets.some((o) => i >= o && i < o + page);
  for (let i = Math.max(0, start); i < Math.min(end, items.length); i++) {
    if (items[i] || covered(i)) continue;
    let j = i;
    while (j < items.length && j - i < page && !items[j]) j++;
    const boundedBelow = j < items.length && !!items[j] && j - i < page;
    offsets.push(boundedBelow ? Math.max(0, j - page) : i);
    i = j - 1;
  }
  return offsets;
}

// --------------------------------------------------------------- filters

export type DateRange = 'all' | 'today' | '7d' | '30d' | 'custom';

/** ISO bounds (inclusive from, exclusive to) of a date filter; custom dates are local days, `to` inclusive. */
export function dateBounds(range: DateRange, now: Date, fromDate = '', toDate = ''): { from?: string; to?: string } {
  const day = (s: string) => {
    const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
    return m ? new Date(Number(m[1]), Number(m[2]) - 1, Number(m[3])) : null;
  };
  if (range === 'today') return { from: new Date(now.getFullYear(), now.getMonth(), now.getDate()).toISOString() };
  if (range === '7d' || range === '30d') return { from: new Date(now.getTime() - (range === '7d' ? 7 : 30) * 86400000).toISOString() };
  if (range === 'custom') {
    const f = day(fromDate);
    const t = day(toDate);
    if (t) t.setDate(t.getDate() + 1);
    return { ...(f ? { from: f.toISOString() } : {}), ...(t ? { to: t.toISOString() } : {}) };
  }
  return {};
}

/** "1 generation", "1,234 generations", "10,000+ generations". */
export function formatCount(total: number, capped = false, noun = 'generation'): string {
  return `${total.toLocaleString('en-US')}${capped ? '+' : ''} ${noun}${total === 1 && !capped ? '' : 's'}`;
}

// --------------------------------------------------------------- exports

/** The parameters of several entries, as one JSON file. */
export function selectionJson(gens: Generation[], now = new Date()): string {
  return JSON.stringify(
    {
      format: 'atelier.selection',
      version: 1,
      exportedAt: now.toISOString(),
      count: gens.length,
      items: gens.map((g) => ({
        id: g.id,
        createdAt: g.createdAt,
        mode: g.mode,
        prompt: g.prompt,
        negativePrompt: g.negativePrompt,
        model: g.modelName,
        modelHash: g.modelHash,
        sampler: g.sampler,
        steps: g.steps,
        cfg: g.cfg,
        seed: g.seed,
        width: g.width,
        height: g.height,
        batch: g.batch,
        strength: g.strength,
        loras: g.loras.map((l) => ({ name: l.name, weight: l.weight, hash: l.hash })),
        backend: g.backend,
        device: g.device,
        favorite: g.favorite,
        images: g.images.map((im) => ({ index: im.index, seed: im.seed, width: im.width, height: im.height, sha256: im.sha256, path: im.path })),
      })),
    },
    null,
    2,
  );
}

/** Cells of a contact sheet for n images of one size: as square as possible. */
export function sheetLayout(n: number, width: number, height: number, gap = 0): { cols: number; rows: number; width: number; height: number; at: { x: number; y: number }[] } {
  const cols = Math.max(1, Math.ceil(Math.sqrt(n)));
  const rows = Math.max(1, Math.ceil(n / cols));
  const at = Array.from({ length: n }, (_, i) => ({ x: (i % cols) * (width + gap), y: Math.floor(i / cols) * (height + gap) }));
  return { cols, rows, width: cols * width + (cols - 1) * gap, height: rows * height + (rows - 1) * gap, at };
}
