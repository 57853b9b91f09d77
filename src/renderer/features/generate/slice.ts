import { cloudModel, defaultQuality, formatUsd } from '../../../shared/cloud';
import { GenerateParams, MAX_SEED, type CloudStatus, type Generation, type ImageMetadata, type LoraUse, type Sampler } from '../../../shared/contract';
import type { SliceCreator } from '../../app/store';
import { client, ClientError } from '../../lib/client';
import { canvasRecord, formFromMetadata, SOURCE_LABEL } from '../gallery/recall';
import { planBatch, type BatchMode } from './batch';
import { modelDefaults } from '../../../shared/presets';

export interface GenerateForm {
  mode: 'txt2img' | 'img2img';
  prompt: string;
  negativePrompt: string;
  modelId: string;
  sampler: Sampler;
  steps: number;
  cfg: number;
  seed: number;
  width: number;
  height: number;
  batch: number;
  strength: number;
  initImageId: string | null;
  initImagePath: string | null;
  /** LoRAs from the library applied to the generation, in order. */
  loras: LoraUse[];
  /** Generate even when an identical request's image is in the history ("Reuse identical results" off). */
  noCache: boolean;
  /** Local worker or OpenAI Images; the cloud fields apply to the latter. */
  backend: 'local' | 'cloud';
  cloudModel: string;
  cloudSize: string;
  cloudQuality: string;
  cloudStyle: string;
}

/** The request fields that differ by backend: cloud requests name the OpenAI model and its options, and take no LoRAs or negative prompt. */
export function backendParams(form: GenerateForm, overBudgetOk = false): Partial<GenerateParams> {
  if (form.backend !== 'cloud') return { backend: 'local' };
  return {
    backend: 'cloud',
    modelId: form.cloudModel,
    negativePrompt: '',
    loras: [],
    cloud: { size: form.cloudSize, quality: form.cloudQuality, style: form.cloudStyle, overBudgetOk },
  };
}

/** What the last dropped (or opened) PNG gave the form, for the panel that says so. */
export interface RecallReport {
  file: string;
  source: string;
  restored: string[];
  notes: string[];
}

/** The range the weight slider offers (the contract allows -4..4; past ±2 a LoRA only burns the image). */
export const LORA_WEIGHT_MIN = -2;
export const LORA_WEIGHT_MAX = 2;

export interface GenerateSlice {
  form: GenerateForm;
  seedLocked: boolean;
  fieldErrors: Record<string, string>;
  /** Single prompt, one prompt per line, or a prompt matrix. */
  batchMode: BatchMode;
  /** Bumped to move the focus into the prompt (e.g. "Same seed, new prompt"). */
  promptFocus: number;
  recall: RecallReport | null;
  cloudStatus: CloudStatus | null;
  /** The last cloud submit would pass the monthly budget: the panel says so, and the next submit goes on. */
  budgetWarning: string | null;
  loadCloud(): Promise<void>;
  setBackend(backend: 'local' | 'cloud'): void;
  /** Pick an OpenAI model; size, quality and style fall back to ones it takes. */
  chooseCloudModel(id: string): void;
  setBatchMode(mode: BatchMode): void;
  setField<K extends keyof GenerateForm>(key: K, value: GenerateForm[K]): void;
  setSeedLocked(locked: boolean): void;
  /** Pick a checkpoint; the size follows its native resolution (64 for the shapes demo, 512 SD 1.5, 1024 SDXL). */
  chooseModel(id: string): void;
  randomizeSeed(): void;
  submit(): Promise<void>;
  /** "Use these settings": every parameter of a history entry back into the form. */
  restoreFrom(g: Generation, imageIndex?: number, opts?: { quiet?: boolean }): void;
  /** The settings of an image with its seed locked, and the prompt focused and selected for a new one. */
  sameSeedNewPrompt(g: Generation, imageIndex?: number): void;
  /** A dropped PNG's settings (`history.readMetadata`) into the form. */
  applyMetadata(meta: ImageMetadata, file: string): void;
  dismissRecall(): void;
  useAsInit(imageId: string, path: string): void;
  addLora(modelId: string, weight?: number): void;
  setLoraWeight(modelId: string, weight: number): void;
  removeLora(modelId: string): void;
  /** "Use this LoRA" after a training: its base model, the LoRA at weight 1, the trigger word in the prompt. */
  useTrainedLora(loraId: string, baseModelId: string | null, trigger: string): Promise<void>;
}

/** Whether a prompt already holds a trigger word (as a word, any case). */
export function hasTrigger(prompt: string, trigger: string): boolean {
  const t = trigger.trim();
  if (!t) return true;
  const esc = t.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`(^|[^\\p{L}\\p{N}_])${esc}($|[^\\p{L}\\p{N}_])`, 'iu').test(prompt);
}

export function randomSeed(): number {
  const a = new Uint32Array(1);
  crypto.getRandomValues(a);
  return a[0] % (MAX_SEED + 1);
}

export const createGenerateSlice: SliceCreator<GenerateSlice> = (set, get) => ({
  form: {
    mode: 'txt2img',
    prompt: '',
    negativePrompt: '',
    modelId: '',
    sampler: 'Euler a',
    steps: 20,
    cfg: 7,
    seed: randomSeed(),
    width: 512,
    height: 512,
    batch: 1,
    strength: 0.75,
    initImageId: null,
    initImagePath: null,
    loras: [],
    noCache: false,
    backend: 'local',
    cloudModel: 'gpt-image-1',
    cloudSize: '1024x1024',
    cloudQuality: 'medium',
    cloudStyle: '',
  },
  cloudStatus: null,
  budgetWarning: null,
  loadCloud: async () => set({ cloudStatus: await client.call('cloud.status') }),
  setBackend: (backend) => set((s) => ({ form: { ...s.form, backend }, fieldErrors: {}, budgetWarning: null })),
  chooseCloudModel: (id) =>
    set((s) => {
      const m = cloudModel(id);
      if (!m) return s;
      const f = s.form;
      return {
        form: {
          ...f,
          cloudModel: m.id,
          cloudSize: m.sizes.includes(f.cloudSize) ? f.cloudSize : m.sizes[0],
          cloudQuality: m.qualities.includes(f.cloudQuality) ? f.cloudQuality : defaultQuality(m),
          cloudStyle: m.styles.includes(f.cloudStyle) ? f.cloudStyle : (m.styles[0] ?? ''),
          batch: Math.min(f.batch, m.maxN),
        },
        fieldErrors: {},
        budgetWarning: null,
      };
    }),
  seedLocked: false,
  fieldErrors: {},
  batchMode: 'single',
  promptFocus: 0,
  recall: null,
  setBatchMode: (batchMode) =>
    set((s) => {
      const fieldErrors = { ...s.fieldErrors };
      delete fieldErrors.prompt;
      return { batchMode, fieldErrors };
    }),
  setField: (key, value) =>
    set((s) => {
      const fieldErrors = { ...s.fieldErrors };
      delete fieldErrors[key as string];
      return { form: { ...s.form, [key]: value }, fieldErrors, budgetWarning: null };
    }),
  setSeedLocked: (seedLocked) => set({ seedLocked }),
  chooseModel: (id) => {
    const m = get().models.find((x) => x.id === id);
    set((s) => ({
      form: { ...s.form, modelId: id, ...modelDefaults(m) },
      fieldErrors: { ...s.fieldErrors, modelId: '' },
    }));
  },
  randomizeSeed: () => set((s) => ({ form: { ...s.form, seed: randomSeed() } })),
  submit: async () => {
    const { form, seedLocked, batchMode, budgetWarning } = get();
    const candidate = { ...form, initImageId: form.initImageId ?? undefined, ...backendParams(form, !!budgetWarning) };
    if (form.backend === 'cloud' && !budgetWarning) {
      // Warn before a request would pass the monthly budget; the next click goes on.
      const prompts = batchMode === 'single' ? 1 : planBatch(batchMode, form.prompt).prompts.length;
      try {
        const est = await client.call('cloud.estimate', { model: form.cloudModel, size: form.cloudSize, quality: form.cloudQuality, n: Math.max(1, Math.min(16, form.batch)) });
        const cost = est.costUsd * Math.max(1, prompts);
        if (est.budgetUsd > 0 && est.spentThisMonthUsd + cost > est.budgetUsd) {
          set({
            budgetWarning: `This would cost about ${formatUsd(cost)} and take this month's cloud spend to ${formatUsd(est.spentThisMonthUsd + cost)}, past your budget of ${formatUsd(est.budgetUsd)}.`,
          });
          return;
        }
      } catch {
        /* the server checks the budget again */
      }
    }
    const invalid = (issues: { path: PropertyKey[]; message: string }[]) => {
      const fieldErrors: Record<string, string> = {};
      for (const issue of issues) fieldErrors[String(issue.path[0] ?? 'form')] ??= issue.message;
      set({ fieldErrors });
    };
    if (batchMode !== 'single') {
      const plan = planBatch(batchMode, form.prompt);
      if (plan.error) return set((s) => ({ fieldErrors: { ...s.fieldErrors, prompt: plan.error! } }));
      const items: GenerateParams[] = [];
      for (const prompt of plan.prompts) {
        const parsed = GenerateParams.safeParse({ ...candidate, prompt });
        if (!parsed.success) return invalid(parsed.error.issues);
        items.push(parsed.data);
      }
      try {
        const jobs = await client.call('jobs.submitMany', { items });
        set({ budgetWarning: null });
        get().toast('info', `Queued ${jobs.length} ${jobs.length === 1 ? 'job' : 'jobs'}.`);
        if (!seedLocked) set((s) => ({ form: { ...s.form, seed: randomSeed() } }));
        if (form.backend === 'local') get().remember(items[0].modelId);
      } catch (err) {
        get().toast('error', (err as ClientError).message);
      }
      return;
    }
    const parsed = GenerateParams.safeParse(candidate);
    if (!parsed.success) return invalid(parsed.error.issues);
    try {
      await client.call('jobs.submit', parsed.data);
      set({ budgetWarning: null });
      if (!seedLocked) set((s) => ({ form: { ...s.form, seed: randomSeed() } }));
      if (form.backend === 'local') get().remember(parsed.data.modelId);
    } catch (err) {
      const e = err as ClientError;
      get().toast('error', e.message);
    }
  },
  restoreFrom: (g, imageIndex = 0, opts = {}) => {
    const img = g.images[imageIndex];
    const rec = canvasRecord(g);
    // img2img from a history image: its starting image is the image's parent. Canvas inputs stay in the entry.
    const parent = g.mode === 'img2img' && !rec?.canvas ? (img?.parentImageId ?? null) : null;
    const parentPath = parent ? (get().items.flatMap((x) => x?.images ?? []).find((im) => im.id === parent)?.path ?? null) : null;
    const known = new Set(get().models.filter((m) => m.kind === 'lora').map((m) => m.id));
    const loras: LoraUse[] = [];
    const missing: string[] = [];
    for (const l of g.loras ?? []) {
      if (l.modelId && known.has(l.modelId) && !loras.some((x) => x.modelId === l.modelId)) loras.push({ modelId: l.modelId, weight: l.weight });
      else missing.push(l.name);
    }
    if (g.backend === 'cloud') {
      const m = cloudModel(g.modelName);
      set((s) => ({
        form: {
          ...s.form,
          backend: 'cloud',
          mode: parent ? 'img2img' : 'txt2img',
          initImageId: parent,
          initImagePath: parentPath,
          prompt: g.prompt,
          cloudModel: m?.id ?? s.form.cloudModel,
          cloudSize: g.cloud?.size || s.form.cloudSize,
          cloudQuality: g.cloud?.quality ?? '',
          cloudStyle: g.cloud?.style ?? '',
          batch: img ? 1 : g.batch,
        },
        fieldErrors: {},
        batchMode: 'single',
        budgetWarning: null,
        route: 'generate',
      }));
      if (!m) get().toast('info', `The cloud model "${g.modelName}" is not one Atelier offers any more: pick another.`);
      return;
    }
    set((s) => ({
      form: {
        ...s.form,
        backend: 'local',
        mode: parent ? 'img2img' : 'txt2img',
        initImageId: parent,
        initImagePath: parentPath,
        prompt: g.prompt,
        negativePrompt: g.negativePrompt,
        modelId: g.modelId ?? s.form.modelId,
        sampler: g.sampler as Sampler,
        steps: g.steps,
        cfg: g.cfg,
        seed: img ? img.seed : g.seed,
        width: g.width,
        height: g.height,
        batch: img ? 1 : g.batch,
        strength: g.strength ?? s.form.strength,
        loras,
        noCache: false,
      },
      seedLocked: true,
      fieldErrors: {},
      batchMode: 'single',
      route: 'generate',
    }));
    if (rec && !opts.quiet) get().toast('info', 'Made on the canvas: the frame, mask and control inputs are in the history entry (Gallery → Open in canvas restores them).');
    else if (!rec && g.mode === 'img2img' && !parent) get().toast('info', 'The starting image of this entry is not in the history any more: choose one.');
    if (!g.modelId) get().toast('info', `The model "${g.modelName}" is no longer in the library: pick another.`);
    if (missing.length) get().toast('info', `Not in the library any more, left out: ${missing.map((n) => `LoRA "${n}"`).join(', ')}.`);
  },
  sameSeedNewPrompt: (g, imageIndex = 0) => {
    get().restoreFrom(g, imageIndex);
    set((s) => ({ seedLocked: true, promptFocus: s.promptFocus + 1 }));
  },
  applyMetadata: (meta, file) => {
    const { patch, restored, notes } = formFromMetadata(meta);
    const s0 = get();
    // Only LoRAs still in the library (the server matched them by hash or name).
    if (patch.loras) patch.loras = patch.loras.filter((l) => s0.models.some((m) => m.id === l.modelId && m.kind === 'lora'));
    if (patch.modelId && !s0.models.some((m) => m.id === patch.modelId && m.kind === 'checkpoint')) delete patch.modelId;
    set((s) => ({
      form: { ...s.form, ...patch, mode: 'txt2img', initImageId: null, initImagePath: null, noCache: false },
      seedLocked: patch.seed !== undefined ? true : s.seedLocked,
      fieldErrors: {},
      batchMode: 'single',
      recall: { file, source: SOURCE_LABEL[meta.source], restored, notes },
      route: s.route === 'canvas' ? 'canvas' : 'generate',
    }));
  },
  dismissRecall: () => set({ recall: null }),
  addLora: (modelId, weight = 1) =>
    set((s) => {
      if (!modelId || s.form.loras.some((l) => l.modelId === modelId)) return s;
      const fieldErrors = { ...s.fieldErrors };
      delete fieldErrors.loras;
      return { form: { ...s.form, loras: [...s.form.loras, { modelId, weight }] }, fieldErrors };
    }),
  setLoraWeight: (modelId, weight) =>
    set((s) => ({ form: { ...s.form, loras: s.form.loras.map((l) => (l.modelId === modelId ? { ...l, weight } : l)) } })),
  removeLora: (modelId) =>
    set((s) => {
      const fieldErrors = { ...s.fieldErrors };
      delete fieldErrors.loras;
      return { form: { ...s.form, loras: s.form.loras.filter((l) => l.modelId !== modelId) }, fieldErrors };
    }),
  useTrainedLora: async (loraId, baseModelId, trigger) => {
    // The LoRA was registered just now: the list may not have caught up with models.changed yet.
    if (!get().models.some((m) => m.id === loraId)) await get().loadModels().catch(() => {});
    const s = get();
    if (baseModelId && s.models.some((m) => m.id === baseModelId && m.kind === 'checkpoint') && s.form.modelId !== baseModelId) s.chooseModel(baseModelId);
    const existing = get().form.loras.find((l) => l.modelId === loraId);
    if (existing) get().setLoraWeight(loraId, 1);
    else get().addLora(loraId, 1);
    const prompt = get().form.prompt;
    if (trigger.trim() && !hasTrigger(prompt, trigger)) get().setField('prompt', prompt.trim() ? `${trigger.trim()}, ${prompt}` : trigger.trim());
    set({ route: 'generate' });
  },
  useAsInit: (imageId, path) => set((s) => ({ form: { ...s.form, mode: 'img2img', initImageId: imageId, initImagePath: path }, route: 'generate' })),
});
