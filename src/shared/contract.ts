/**
 * The contract: every method and event that crosses a process boundary
 * (renderer <-> main over Electron IPC or the web mode's WebSocket).
 *
 * Each method has an input and an output schema; the receiving side validates
 * (the host validates inputs, the client validates outputs and events), so a
 * bug or a hostile page on one side cannot hand the other malformed data.
 * Imported by main, preload and renderer; imports nothing of theirs.
 */
import { z } from 'zod';

// ---------------------------------------------------------------- generation

export const SAMPLERS = ['Euler', 'Euler a', 'DPM++ 2M', 'DPM++ 2M Karras', 'DPM++ SDE Karras', 'DDIM', 'UniPC', 'LCM'] as const;
export type Sampler = (typeof SAMPLERS)[number];

export const MAX_SEED = 4294967295; // seeds are uint32, as in A1111 and ComfyUI
export const MIN_SIDE = 64;
export const MAX_SIDE = 4096;

const side = z
  .number()
  .int()
  .min(MIN_SIDE, `must be at least ${MIN_SIDE} px`)
  .max(MAX_SIDE, `must be at most ${MAX_SIDE} px`)
  .refine((v) => v % 8 === 0, 'must be a multiple of 8');

/** A PNG the app stored by content hash (canvas composites, masks, control images, imports). */
export const AssetPath = z.string().regex(/^assets\/[0-9a-f]{2}\/[0-9a-f]{64}\.png$/, 'is not an asset path');

export const FrameRect = z.object({ x: z.number().int(), y: z.number().int(), width: side, height: side });
export type FrameRect = z.infer<typeof FrameRect>;

/** What the canvas sends: the frame's composite (transparent where the canvas is empty) and the mask. */
export const CanvasInputs = z.object({
  frame: FrameRect,
  init: AssetPath,
  /** White = repaint. Null: only the empty (transparent) area is generated (outpainting). */
  mask: AssetPath.nullable().default(null),
  maskBlur: z.number().int().min(0).max(256).default(8),
  maskOnly: z.boolean().default(false),
  maskPadding: z.number().int().min(0).max(1024).default(32),
  fill: z.enum(['edge', 'blur', 'telea', 'noise']).default('edge'),
});
export type CanvasInputs = z.infer<typeof CanvasInputs>;

export const ControlInputs = z.object({
  type: z.literal('canny').default('canny'),
  /** A ControlNet in the model library. */
  modelId: z.string().min(1),
  image: AssetPath,
  scale: z.number().min(0).max(2).default(1),
  start: z.number().min(0).max(1).default(0),
  end: z.number().min(0).max(1).default(1),
});
export type ControlInputs = z.infer<typeof ControlInputs>;

export const GenerateParams = z
  .object({
    mode: z.enum(['txt2img', 'img2img', 'inpaint']).default('txt2img'),
    prompt: z.string().trim().min(1, 'is empty: describe the image').max(20000),
    negativePrompt: z.string().max(20000).default(''),
    /** Id of a row in the model library. */
    modelId: z.string().min(1, 'is not chosen: pick a model'),
    sampler: z.enum(SAMPLERS).default('Euler a'),
    steps: z.number().int().min(1).max(200).default(20),
    cfg: z.number().min(0).max(30).default(7),
    seed: z.number().int().min(0).max(MAX_SEED),
    width: side.default(512),
    height: side.default(512),
    batch: z.number().int().min(1).max(16).default(1),
    /** img2img only: 0 keeps the input, 1 ignores it. */
    strength: z.number().min(0).max(1).default(0.75),
    /** img2img only: a history image used as the starting point. */
    initImageId: z.string().optional(),
    /** Canvas generations: the frame's composite, mask and fill (img2img or inpaint). */
    canvas: CanvasInputs.optional(),
    control: ControlInputs.optional(),
  })
  .superRefine((p, ctx) => {
    if (p.mode === 'img2img' && !p.initImageId && !p.canvas) {
      ctx.addIssue({ code: 'custom', path: ['initImageId'], message: 'is required for img2img: choose a starting image' });
    }
    if (p.mode === 'inpaint' && !p.canvas) {
      ctx.addIssue({ code: 'custom', path: ['canvas'], message: 'is required for inpainting: paint a mask on the canvas' });
    }
    if (p.control && p.control.end < p.control.start) {
      ctx.addIssue({ code: 'custom', path: ['control', 'end'], message: 'must not be before start' });
    }
  });
export type GenerateParams = z.infer<typeof GenerateParams>;
export type GenerateParamsInput = z.input<typeof GenerateParams>;

// ------------------------------------------------------------------- history

export const ImageRecord = z.object({
  id: z.string(),
  generationId: z.string(),
  index: z.number().int(),
  /** Path relative to the library folder, forward slashes. */
  path: z.string(),
  sha256: z.string(),
  width: z.number().int(),
  height: z.number().int(),
  seed: z.number().int(),
  parentImageId: z.string().nullable(),
  createdAt: z.string(),
});
export type ImageRecord = z.infer<typeof ImageRecord>;

export const Generation = z.object({
  id: z.string(),
  createdAt: z.string(),
  backend: z.enum(['local', 'cloud']),
  mode: z.string(),
  prompt: z.string(),
  negativePrompt: z.string(),
  modelId: z.string().nullable(),
  modelName: z.string(),
  modelHash: z.string().nullable(),
  sampler: z.string(),
  steps: z.number().int(),
  cfg: z.number(),
  seed: z.number().int(),
  width: z.number().int(),
  height: z.number().int(),
  batch: z.number().int(),
  strength: z.number().nullable(),
  control: z.unknown().nullable(),
  loras: z.array(z.object({ name: z.string(), hash: z.string().nullable(), weight: z.number() })),
  device: z.string().nullable(),
  timings: z.record(z.string(), z.number()),
  costUsd: z.number().nullable(),
  images: z.array(ImageRecord),
});
export type Generation = z.infer<typeof Generation>;

export const HistoryListInput = z.object({
  query: z.string().max(500).default(''),
  limit: z.number().int().min(1).max(500).default(60),
  offset: z.number().int().min(0).default(0),
});
export const HistoryPage = z.object({ items: z.array(Generation), total: z.number().int(), nextOffset: z.number().int().nullable() });
export type HistoryPage = z.infer<typeof HistoryPage>;

// -------------------------------------------------------------------- models

export const ModelFamily = z.enum(['sd15', 'sdxl', 'unknown']);
export const ModelRecord = z.object({
  id: z.string(),
  name: z.string(),
  path: z.string(),
  kind: z.enum(['checkpoint', 'lora', 'controlnet', 'vae']),
  format: z.enum(['diffusers', 'single_file']),
  family: ModelFamily,
  sizeBytes: z.number(),
  source: z.string(),
  hash: z.string().nullable(),
  /** Side in pixels the checkpoint was trained at, when known. */
  nativeSize: z.number().int().nullable(),
  addedAt: z.string(),
});
export type ModelRecord = z.infer<typeof ModelRecord>;

// ------------------------------------------------------------------- runtime

export const DeviceInfo = z.object({ kind: z.string(), name: z.string(), vramMb: z.number() });
export const RuntimeState = z.enum(['not_installed', 'provisioning', 'starting', 'ready', 'restarting', 'failed', 'stopped']);
export const RuntimeStatus = z.object({
  state: RuntimeState,
  message: z.string(),
  provision: z.object({ phase: z.string(), fraction: z.number().min(0).max(1) }).nullable(),
  python: z.string().nullable(),
  versions: z.record(z.string(), z.string()),
  device: z.string().nullable(),
  devices: z.array(DeviceInfo),
  memoryMode: z.string().nullable(),
  restarts: z.number().int(),
});
export type RuntimeStatus = z.infer<typeof RuntimeStatus>;

// ---------------------------------------------------------------------- jobs

export const ErrorPayloadSchema = z.object({ code: z.string(), message: z.string(), detail: z.string().optional() });
export const JobState = z.enum(['queued', 'running', 'done', 'failed', 'cancelled']);
export const Job = z.object({
  id: z.string(),
  state: JobState,
  params: z.custom<GenerateParams>((v) => typeof v === 'object' && v !== null),
  modelName: z.string(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  step: z.number().int(),
  total: z.number().int(),
  imageIndex: z.number().int(),
  generationId: z.string().nullable(),
  error: ErrorPayloadSchema.nullable(),
});
export type Job = z.infer<typeof Job>;

export const JobProgress = z.object({
  jobId: z.string(),
  image: z.number().int(),
  step: z.number().int(),
  total: z.number().int(),
  /** data: URL of a small JPEG computed from the latents, when this step has one. */
  preview: z.string().nullable(),
});
export type JobProgress = z.infer<typeof JobProgress>;

// ------------------------------------------------------------------ settings

export const Settings = z.object({
  theme: z.enum(['dark', 'light']).default('dark'),
  /** An existing Python interpreter to build the runtime from; empty: the one Atelier finds. */
  pythonPath: z.string().max(4096).default(''),
  /** Folders scanned for models (safetensors files and diffusers folders). */
  modelDirs: z.array(z.string().max(4096)).max(64).default([]),
  memoryMode: z.enum(['auto', 'normal', 'low', 'minimal']).default('auto'),
  previewEvery: z.number().int().min(0).max(50).default(2),
  defaults: z
    .object({
      sampler: z.enum(SAMPLERS).default('Euler a'),
      steps: z.number().int().min(1).max(200).default(20),
      cfg: z.number().min(0).max(30).default(7),
      width: side.default(512),
      height: side.default(512),
    })
    .prefault({}),
  lastModelId: z.string().default(''),
});
export type Settings = z.infer<typeof Settings>;
export const SettingsPatch = Settings.partial();
export type SettingsPatch = z.infer<typeof SettingsPatch>;

export const AppInfo = z.object({
  version: z.string(),
  shell: z.enum(['electron', 'web']),
  platform: z.string(),
  dataDir: z.string(),
});
export type AppInfo = z.infer<typeof AppInfo>;

// ----------------------------------------------------------------- the table

const none = z.object({}).strict().default({});
/** 48 MB of PNG, base64-encoded: a 4096×4096 RGBA composite fits. */
export const MAX_ASSET_BASE64 = 64 * 1024 * 1024;
const byId = z.object({ id: z.string().min(1).max(200) }).strict();

export const methods = {
  'app.info': { input: none, output: AppInfo },
  'settings.get': { input: none, output: Settings },
  'settings.update': { input: SettingsPatch.strict(), output: Settings },
  'history.list': { input: HistoryListInput.strict(), output: HistoryPage },
  'history.get': { input: byId, output: Generation },
  'history.delete': { input: z.object({ ids: z.array(z.string().min(1).max(200)).min(1).max(10000) }).strict(), output: z.object({ deleted: z.number().int() }) },
  'models.list': { input: none, output: z.array(ModelRecord) },
  'models.rescan': { input: none, output: z.array(ModelRecord) },
  'runtime.status': { input: none, output: RuntimeStatus },
  'runtime.provision': { input: z.object({ repair: z.boolean().default(false) }).strict(), output: RuntimeStatus },
  'runtime.restart': { input: none, output: RuntimeStatus },
  'jobs.submit': { input: GenerateParams, output: Job },
  /** Store a PNG (base64) by content hash; returns its library-relative path. */
  'assets.put': {
    input: z.object({ png: z.string().min(8).max(MAX_ASSET_BASE64) }).strict(),
    output: z.object({ path: AssetPath, width: z.number().int(), height: z.number().int() }),
  },
  /** Canny edges of an asset or history image, as a new asset (white edges on black). */
  'canvas.canny': {
    input: z
      .object({ image: z.string().min(1).max(300), low: z.number().int().min(0).max(1000).default(100), high: z.number().int().min(0).max(1000).default(200), width: side.optional(), height: side.optional() })
      .strict(),
    output: z.object({ path: AssetPath, width: z.number().int(), height: z.number().int(), edgeFraction: z.number() }),
  },
  'jobs.cancel': { input: byId, output: z.object({ cancelled: z.boolean() }) },
  'jobs.list': { input: none, output: z.array(Job) },
} as const;

export const events = {
  'jobs.changed': Job,
  'jobs.progress': JobProgress,
  'runtime.changed': RuntimeStatus,
  'history.added': z.object({ generationId: z.string() }),
  'history.deleted': z.object({ ids: z.array(z.string()) }),
  'settings.changed': Settings,
} as const;

export type Methods = typeof methods;
export type MethodName = keyof Methods;
export type EventName = keyof typeof events;
export type MethodInput<M extends MethodName> = z.input<Methods[M]['input']>;
export type MethodParsedInput<M extends MethodName> = z.output<Methods[M]['input']>;
export type MethodOutput<M extends MethodName> = z.output<Methods[M]['output']>;
export type EventPayload<E extends EventName> = z.output<(typeof events)[E]>;

export const METHOD_NAMES = Object.keys(methods) as MethodName[];
export const EVENT_NAMES = Object.keys(events) as EventName[];

export function isMethodName(name: unknown): name is MethodName {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(methods, name);
}
export function isEventName(name: unknown): name is EventName {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(events, name);
}
