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
import { cloudModel } from './cloud';

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

/** OpenAI Images options (see shared/cloud.ts for what each model accepts). */
export const CloudOptions = z.object({
  size: z.string().max(20),
  /** '' = the model's default (or none). */
  quality: z.string().max(20).default(''),
  style: z.string().max(20).default(''),
  /** The user saw the budget warning and went on. */
  overBudgetOk: z.boolean().default(false),
});
export type CloudOptions = z.infer<typeof CloudOptions>;

/** A LoRA from the library applied to a generation, with its strength. */
export const LoraUse = z.object({ modelId: z.string().min(1).max(200), weight: z.number().min(-4).max(4).default(1) });
export type LoraUse = z.infer<typeof LoraUse>;

export const GenerateParams = z
  .object({
    mode: z.enum(['txt2img', 'img2img', 'inpaint']).default('txt2img'),
    /** local: the Python worker; cloud: OpenAI Images, `modelId` naming the OpenAI model. */
    backend: z.enum(['local', 'cloud']).default('local'),
    cloud: CloudOptions.optional(),
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
    loras: z.array(LoraUse).max(16, 'at most 16 LoRAs at once').default([]),
    /** Generate even when an identical earlier request's image is in the history (the result cache). */
    noCache: z.boolean().default(false),
  })
  .superRefine((p, ctx) => {
    if (p.mode === 'img2img' && !p.initImageId && !p.canvas) {
      ctx.addIssue({ code: 'custom', path: ['initImageId'], message: 'is required for img2img: choose a starting image' });
    }
    if (p.mode === 'inpaint' && !p.canvas) {
      ctx.addIssue({ code: 'custom', path: ['canvas'], message: 'is required for inpainting: paint a mask on the canvas' });
    }
    const seen = new Set<string>();
    p.loras.forEach((l, i) => {
      if (seen.has(l.modelId)) ctx.addIssue({ code: 'custom', path: ['loras', i, 'modelId'], message: 'is already in the list' });
      seen.add(l.modelId);
    });
    if (p.control && p.control.end < p.control.start) {
      ctx.addIssue({ code: 'custom', path: ['control', 'end'], message: 'must not be before start' });
    }
    if (p.backend === 'cloud') {
      const m = cloudModel(p.modelId);
      const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message });
      if (!m) return issue(['modelId'], `is not an OpenAI image model: ${p.modelId}`);
      if (!p.cloud) return issue(['cloud'], 'is required for the cloud backend: choose a size');
      if (!m.sizes.includes(p.cloud.size)) issue(['cloud', 'size'], `must be one of ${m.sizes.join(', ')} for ${m.label}`);
      if (p.cloud.quality && !m.qualities.includes(p.cloud.quality)) issue(['cloud', 'quality'], m.qualities.length ? `must be one of ${m.qualities.join(', ')} for ${m.label}` : `is not an option of ${m.label}`);
      if (p.cloud.style && !m.styles.includes(p.cloud.style)) issue(['cloud', 'style'], m.styles.length ? `must be one of ${m.styles.join(', ')} for ${m.label}` : `is not an option of ${m.label}`);
      if (p.batch > m.maxN) issue(['batch'], `must be at most ${m.maxN} for ${m.label}`);
      if (p.mode !== 'txt2img' && !m.edit) issue(['modelId'], `cannot edit images: ${m.label} only generates; pick GPT Image or DALL·E 2 for the canvas`);
      if (p.loras.length) issue(['loras'], 'are local only: the cloud models take no LoRAs');
      if (p.control) issue(['control'], 'is local only: the cloud models take no ControlNet');
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
  loras: z.array(z.object({ name: z.string(), hash: z.string().nullable(), weight: z.number(), modelId: z.string().optional() })),
  device: z.string().nullable(),
  timings: z.record(z.string(), z.number()),
  costUsd: z.number().nullable(),
  /** Cloud only: the prompt the model says it used, when it rewrote ours. */
  revisedPrompt: z.string().nullable().default(null),
  /** Cloud only: the options it was asked with (what "use these settings" restores). */
  cloud: z.object({ size: z.string(), quality: z.string(), style: z.string() }).nullable().default(null),
  favorite: z.boolean(),
  images: z.array(ImageRecord),
});
export type Generation = z.infer<typeof Generation>;

export const HistoryListInput = z.object({
  /** Full-text search over prompts, negative prompts, model and LoRA names (words match by prefix). */
  query: z.string().max(500).default(''),
  model: z.string().max(500).optional(),
  lora: z.string().max(500).optional(),
  sampler: z.string().max(100).optional(),
  backend: z.enum(['local', 'cloud']).optional(),
  favorite: z.boolean().optional(),
  /** ISO dates (inclusive from, exclusive to). */
  from: z.string().max(40).optional(),
  to: z.string().max(40).optional(),
  boardId: z.string().max(200).optional(),
  limit: z.number().int().min(1).max(500).default(60),
  offset: z.number().int().min(0).default(0),
  /** Count the matches on the first page (default). The gallery asks `history.count` separately. */
  withTotal: z.boolean().default(true),
});
export const HistoryFacets = z.object({ models: z.array(z.string()), samplers: z.array(z.string()), loras: z.array(z.string()) });
export const Board = z.object({ id: z.string(), name: z.string(), createdAt: z.string(), count: z.number().int(), cover: z.string().nullable() });
export type Board = z.infer<typeof Board>;
/** What a dropped PNG says about how it was made, resolved against this library where possible. */
export const ImageMetadata = z.object({
  source: z.enum(['atelier', 'a1111', 'comfyui', 'none']),
  params: z.record(z.string(), z.unknown()),
  /** The library model matching the image's model hash or name, if any. */
  modelId: z.string().nullable(),
  loras: z.array(z.object({ name: z.string(), weight: z.number(), modelId: z.string().nullable() })),
  notes: z.array(z.string()),
});
export type ImageMetadata = z.infer<typeof ImageMetadata>;
/**
 * A page of history. `total` is counted on the first page only (offset 0; null on later pages, whose
 * caller already has it), and at most HISTORY_COUNT_CAP rows are counted (`totalCapped` then says "or more"),
 * so a filter over 100,000 rows costs a page, not a scan.
 */
export const HISTORY_COUNT_CAP = 10000;
export const HistoryPage = z.object({ items: z.array(Generation), total: z.number().int().nullable(), totalCapped: z.boolean().default(false), nextOffset: z.number().int().nullable() });
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
  /** Answered from the history (an identical earlier request) without generating. */
  cached: z.boolean().default(false),
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
  /** What a running job is waiting for, in words (a cloud request being retried after a 429). */
  note: z.string().nullable().default(null),
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

// ------------------------------------------------------------------ datasets

export const DatasetImage = z.object({
  /** File name inside the dataset folder (its caption is `<stem>.txt` beside it, as kohya reads it). */
  file: z.string(),
  /** Library-relative path, for display. */
  path: z.string(),
  caption: z.string(),
  width: z.number().int(),
  height: z.number().int(),
  format: z.string(),
});
export type DatasetImage = z.infer<typeof DatasetImage>;
export const SkippedFile = z.object({ file: z.string(), reason: z.string() });
export type SkippedFile = z.infer<typeof SkippedFile>;
export const Dataset = z.object({
  id: z.string(),
  name: z.string(),
  trigger: z.string(),
  createdAt: z.string(),
  images: z.array(DatasetImage),
});
export type Dataset = z.infer<typeof Dataset>;
export const DatasetSummary = Dataset.omit({ images: true }).extend({ imageCount: z.number().int(), cover: z.string().nullable() });
export type DatasetSummary = z.infer<typeof DatasetSummary>;
export const ImportResult = z.object({ dataset: Dataset, added: z.array(z.string()), skipped: z.array(SkippedFile) });
export type ImportResult = z.infer<typeof ImportResult>;

/** Caption text as kohya's sidecar files hold it: one line, no control characters. */
const captionText = z
  .string()
  .max(2000)
  .transform((s) => s.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim());
const datasetName = z.string().trim().min(1, 'is empty: name the dataset').max(120);
const triggerWord = z
  .string()
  .trim()
  .max(60)
  .refine((s) => !/[,\u0000-\u001f]/.test(s), 'may not contain commas or control characters');
/** One dropped file: its name and bytes (base64); 40 MB at most. */
export const UploadFile = z.object({ name: z.string().min(1).max(255), data: z.string().min(4).max(56 * 1024 * 1024) });

// ------------------------------------------------------------------ training

export const TRAINING_OPTIMIZERS = ['adamw', 'adamw8bit'] as const;
export const TrainingConfig = z.object({
  rank: z.number().int().min(1).max(256).default(8),
  alpha: z.number().positive().max(1024).default(8),
  lr: z.number().positive().max(1).default(1e-4),
  steps: z.number().int().min(1).max(1_000_000).default(500),
  batch: z.number().int().min(1).max(64).default(1),
  resolution: z.number().int().min(64).max(2048).refine((v) => v % 8 === 0, 'must be a multiple of 8').default(512),
  seed: z.number().int().min(0).max(MAX_SEED).default(0),
  optimizer: z.enum(TRAINING_OPTIMIZERS).default('adamw'),
  textEncoder: z.boolean().default(false),
  lrScheduler: z.enum(['constant', 'cosine', 'linear']).default('constant'),
  warmupSteps: z.number().int().min(0).max(100_000).default(0),
  mixedPrecision: z.enum(['auto', 'no', 'fp16', 'bf16']).default('auto'),
  gradientCheckpointing: z.boolean().default(false),
  checkpointEvery: z.number().int().min(0).max(100_000).default(100),
  sampleEvery: z.number().int().min(0).max(100_000).default(100),
  samplePrompts: z.array(z.string().trim().min(1).max(2000)).max(8).default([]),
  sampleSteps: z.number().int().min(1).max(100).default(20),
  sampleSeed: z.number().int().min(0).max(MAX_SEED).default(0),
});
export type TrainingConfig = z.infer<typeof TrainingConfig>;
export type TrainingConfigInput = z.input<typeof TrainingConfig>;

export const TrainingState = z.enum(['queued', 'running', 'paused', 'interrupted', 'done', 'failed', 'cancelled']);
export type TrainingState = z.infer<typeof TrainingState>;
export const TrainingSample = z.object({ step: z.number().int(), path: z.string(), prompt: z.string(), seed: z.number().int() });
export type TrainingSample = z.infer<typeof TrainingSample>;
export const TrainingJob = z.object({
  id: z.string(),
  name: z.string(),
  datasetId: z.string(),
  datasetName: z.string(),
  modelId: z.string(),
  modelName: z.string(),
  trigger: z.string(),
  config: TrainingConfig,
  state: TrainingState,
  /** What the worker is doing now: loading, caching, training, sampling, saving. */
  phase: z.string(),
  message: z.string(),
  step: z.number().int(),
  total: z.number().int(),
  loss: z.number().nullable(),
  lr: z.number().nullable(),
  itPerSec: z.number().nullable(),
  etaSec: z.number().nullable(),
  /** The last step a checkpoint holds (what a resume continues from). */
  checkpointStep: z.number().int(),
  images: z.number().int(),
  skipped: z.array(SkippedFile),
  samples: z.array(TrainingSample),
  outputModelId: z.string().nullable(),
  error: z.object({ code: z.string(), message: z.string(), detail: z.string().optional() }).nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  seconds: z.number(),
});
export type TrainingJob = z.infer<typeof TrainingJob>;
export const TrainingProgress = z.object({
  jobId: z.string(),
  step: z.number().int(),
  total: z.number().int(),
  loss: z.number(),
  lossAvg: z.number(),
  lr: z.number(),
  itPerSec: z.number(),
  etaSec: z.number(),
});
export type TrainingProgress = z.infer<typeof TrainingProgress>;
export const TrainingPreset = z.object({
  label: z.string(),
  family: z.string(),
  vramMb: z.number(),
  config: TrainingConfig,
  note: z.string(),
});
export type TrainingPreset = z.infer<typeof TrainingPreset>;

// ------------------------------------------------------------------ settings

const PresetOverride = z.object({ steps: z.number().int().min(1).max(200).optional(), sampler: z.enum(SAMPLERS).optional() });

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
  /** Monthly spending limit for the cloud backend in USD; 0 = none. */
  cloudBudgetUsd: z.number().min(0).max(100000).default(0),
  /** Appended to every prompt (both backends) when not empty. */
  styleSuffix: z.string().max(1000).default(''),
  /** Prompts containing any of these are refused (shared machines). */
  blockedTerms: z.array(z.string().max(200)).max(1000).default([]),
  /** The welcome guide was finished (or dismissed for good). */
  firstRunDone: z.boolean().default(false),
  /** The user's edits to the generation presets (shared/presets.ts). */
  presetOverrides: z
    .object({ preview: PresetOverride.optional(), standard: PresetOverride.optional(), quality: PresetOverride.optional() })
    .default({}),
});
export type Settings = z.infer<typeof Settings>;
/**
 * Only the keys given. Not `Settings.partial()`: in zod 4 a partial object still fills in the
 * defaults of missing keys, so every patch would have reset every other setting to its default.
 */
export const SettingsPatch = z.object(
  Object.fromEntries(Object.entries(Settings.shape).map(([k, v]) => [k, withoutDefault(v).optional()])) as {
    [K in keyof typeof Settings.shape]: z.ZodOptional<z.ZodType<z.output<(typeof Settings.shape)[K]>>>;
  },
);

function withoutDefault(t: z.ZodType): z.ZodType {
  let s = t as z.ZodType & { def: { type: string; innerType?: z.ZodType } };
  while ((s.def.type === 'default' || s.def.type === 'prefault') && s.def.innerType) s = s.def.innerType as typeof s;
  return s;
}
export type SettingsPatch = z.infer<typeof SettingsPatch>;

export const CloudStatus = z.object({
  hasKey: z.boolean(),
  /** Where the key comes from: the OS keychain (Electron's safeStorage) or OPENAI_API_KEY. */
  keySource: z.enum(['keychain', 'env']).nullable(),
  /** A key can be entered here (false in the web mode and the CLI: they read OPENAI_API_KEY). */
  canStoreKey: z.boolean(),
  /** The last four characters, so the user can tell keys apart; never more. */
  keyHint: z.string().nullable(),
  spentThisMonthUsd: z.number(),
  budgetUsd: z.number(),
});
export type CloudStatus = z.infer<typeof CloudStatus>;

export const CloudEstimate = z.object({
  costUsd: z.number(),
  spentThisMonthUsd: z.number(),
  budgetUsd: z.number(),
  /** The request would take this month's spend past a set budget. */
  overBudget: z.boolean(),
});
export type CloudEstimate = z.infer<typeof CloudEstimate>;

export const DownloadRecord = z.object({
  id: z.string(),
  url: z.string(),
  fetchUrl: z.string(),
  filename: z.string(),
  state: z.enum(['queued', 'downloading', 'paused', 'verifying', 'done', 'failed', 'cancelled']),
  received: z.number(),
  total: z.number().nullable(),
  bytesPerSec: z.number(),
  etaSeconds: z.number().nullable(),
  sha256: z.string().nullable(),
  checksumSource: z.enum(['user', 'source']).nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  path: z.string().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export type DownloadRecord = z.infer<typeof DownloadRecord>;

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
  /** A model file or diffusers folder into the library: copied (atomically) or used where it is. */
  'models.import': { input: z.object({ path: z.string().trim().min(1, 'is empty: give the path of a .safetensors file or a diffusers folder').max(4096), mode: z.enum(['copy', 'link']) }).strict(), output: ModelRecord },
  'downloads.list': { input: none, output: z.array(DownloadRecord) },
  /** Add a model from a URL (Hugging Face file URLs, direct links): resumable, verified, placed in the library when whole. */
  'downloads.start': {
    input: z
      .object({
        url: z.string().trim().url('is not a URL').max(4000),
        sha256: z.string().trim().regex(/^[0-9a-fA-F]{64}$/, 'must be 64 hex characters').optional(),
        filename: z.string().trim().min(1).max(255).optional(),
      })
      .strict(),
    output: DownloadRecord,
  },
  'downloads.pause': { input: byId, output: DownloadRecord },
  'downloads.resume': { input: byId, output: DownloadRecord },
  'downloads.cancel': { input: byId, output: DownloadRecord },
  'downloads.remove': { input: byId, output: z.object({ removed: z.boolean() }) },
  'cloud.status': { input: none, output: CloudStatus },
  'cloud.setKey': { input: z.object({ key: z.string().trim().min(20, 'is too short to be an OpenAI key').max(500).regex(/^\S+$/, 'must not contain spaces') }).strict(), output: CloudStatus },
  'cloud.clearKey': { input: none, output: CloudStatus },
  'cloud.estimate': {
    input: z.object({ model: z.string().max(100), size: z.string().max(20), quality: z.string().max(20).default(''), n: z.number().int().min(1).max(16).default(1) }).strict(),
    output: CloudEstimate,
  },
  'history.list': { input: HistoryListInput.strict(), output: HistoryPage },
  /** How many entries match the filters (up to the cap), for the gallery's length and header. */
  'history.count': { input: HistoryListInput.omit({ limit: true, offset: true, withTotal: true }).strict(), output: z.object({ total: z.number().int(), capped: z.boolean() }) },
  'history.get': { input: byId, output: Generation },
  'history.facets': { input: none, output: HistoryFacets },
  'history.setFavorite': { input: z.object({ ids: z.array(z.string().min(1).max(200)).min(1).max(10000), favorite: z.boolean() }).strict(), output: z.object({ updated: z.number().int() }) },
  /** One entry as a ComfyUI API-format workflow, or as plain JSON of its parameters. */
  'history.export': {
    input: z.object({ id: z.string().min(1).max(200), format: z.enum(['comfyui', 'json', 'a1111']) }).strict(),
    output: z.object({ filename: z.string(), mime: z.string(), text: z.string() }),
  },
  /** Read the generation settings out of any PNG (Atelier, A1111 or ComfyUI metadata). */
  'history.readMetadata': { input: z.object({ png: z.string().min(8).max(MAX_ASSET_BASE64) }).strict(), output: ImageMetadata },
  'boards.list': { input: none, output: z.array(Board) },
  'boards.create': { input: z.object({ name: z.string().trim().min(1, 'is empty: name the board').max(120) }).strict(), output: Board },
  'boards.rename': { input: z.object({ id: z.string().min(1).max(200), name: z.string().trim().min(1).max(120) }).strict(), output: Board },
  'boards.delete': { input: byId, output: z.object({ deleted: z.boolean() }) },
  'boards.add': { input: z.object({ id: z.string().min(1).max(200), generationIds: z.array(z.string().min(1).max(200)).min(1).max(10000) }).strict(), output: Board },
  'boards.remove': { input: z.object({ id: z.string().min(1).max(200), generationIds: z.array(z.string().min(1).max(200)).min(1).max(10000) }).strict(), output: Board },
  /** Copy a board's images (with their metadata) and a manifest into a folder. */
  'boards.export': { input: z.object({ id: z.string().min(1).max(200), folder: z.string().min(1).max(4096) }).strict(), output: z.object({ folder: z.string(), images: z.number().int() }) },
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
  /** Queue many at once (prompt lists, prompt matrices, variations), in order. */
  'jobs.submitMany': { input: z.object({ items: z.array(GenerateParams).min(1).max(500) }).strict(), output: z.array(Job) },
  /** Move a queued job to a place in the queue (0 = next). */
  'jobs.move': { input: z.object({ id: z.string().min(1).max(200), index: z.number().int().min(0).max(100000) }).strict(), output: z.array(Job) },
  /** Queue a failed or cancelled job again with the same parameters. */
  'jobs.retry': { input: byId, output: Job },
  'jobs.cancel': { input: byId, output: z.object({ cancelled: z.boolean() }) },
  'jobs.list': { input: none, output: z.array(Job) },

  'datasets.list': { input: none, output: z.array(DatasetSummary) },
  'datasets.get': { input: byId, output: Dataset },
  'datasets.create': { input: z.object({ name: datasetName, trigger: triggerWord.default('') }).strict(), output: Dataset },
  'datasets.update': { input: z.object({ id: z.string().min(1).max(200), name: datasetName.optional(), trigger: triggerWord.optional() }).strict(), output: Dataset },
  'datasets.delete': { input: byId, output: z.object({ deleted: z.boolean() }) },
  /** Copy every image of a folder (and its kohya `.txt` captions) into the dataset; bad files are listed, never fatal. */
  'datasets.importFolder': { input: z.object({ id: z.string().min(1).max(200), folder: z.string().min(1).max(4096) }).strict(), output: ImportResult },
  /** Dropped or picked files, sent as bytes (a `.txt` among them is the caption of the image with its stem). */
  'datasets.addFiles': { input: z.object({ id: z.string().min(1).max(200), files: z.array(UploadFile).min(1).max(200) }).strict(), output: ImportResult },
  'datasets.setCaption': { input: z.object({ id: z.string().min(1).max(200), file: z.string().min(1).max(255), caption: captionText }).strict(), output: DatasetImage },
  'datasets.removeImage': { input: z.object({ id: z.string().min(1).max(200), file: z.string().min(1).max(255) }).strict(), output: Dataset },

  /** Suggested settings for a base model on the device the worker reported (SD 1.5/SDXL at 8, 12, 24 GB; CPU). */
  'training.preset': { input: z.object({ modelId: z.string().min(1).max(200) }).strict(), output: TrainingPreset },
  'training.start': {
    input: z
      .object({
        name: z.string().trim().min(1, 'is empty: name the LoRA').max(120).refine((s) => !/[\\/:*?"<>|\u0000-\u001f]/.test(s), 'may not contain / \\ : * ? " < > |'),
        datasetId: z.string().min(1).max(200),
        modelId: z.string().min(1, 'is not chosen: pick a base model').max(200),
        config: TrainingConfig.prefault({}),
      })
      .strict(),
    output: TrainingJob,
  },
  'training.list': { input: none, output: z.array(TrainingJob) },
  'training.get': { input: byId, output: TrainingJob.extend({ lossHistory: z.array(z.tuple([z.number(), z.number()])) }) },
  /** Stop after writing a checkpoint; `training.resume` continues from it. */
  'training.pause': { input: byId, output: TrainingJob },
  'training.resume': { input: byId, output: TrainingJob },
  /** Stop for good (the checkpoint is discarded). */
  'training.cancel': { input: byId, output: TrainingJob },
  'training.delete': { input: byId, output: z.object({ deleted: z.boolean() }) },
} as const;

export const events = {
  'jobs.changed': Job,
  'jobs.progress': JobProgress,
  'runtime.changed': RuntimeStatus,
  'history.added': z.object({ generationId: z.string() }),
  'history.deleted': z.object({ ids: z.array(z.string()) }),
  'history.changed': z.object({ ids: z.array(z.string()) }),
  'boards.changed': z.object({}),
  'settings.changed': Settings,
  'cloud.changed': CloudStatus,
  'downloads.changed': DownloadRecord,
  'datasets.changed': z.object({ id: z.string() }),
  'training.changed': TrainingJob,
  'training.progress': TrainingProgress,
  'models.changed': z.object({}),
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
