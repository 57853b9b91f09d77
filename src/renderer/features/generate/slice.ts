import { GenerateParams, MAX_SEED, type Generation, type Sampler } from '../../../shared/contract';
import type { SliceCreator } from '../../app/store';
import { client, ClientError } from '../../lib/client';

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
}

export interface GenerateSlice {
  form: GenerateForm;
  seedLocked: boolean;
  fieldErrors: Record<string, string>;
  setField<K extends keyof GenerateForm>(key: K, value: GenerateForm[K]): void;
  setSeedLocked(locked: boolean): void;
  /** Pick a checkpoint; the size follows its native resolution (64 for the shapes demo, 512 SD 1.5, 1024 SDXL). */
  chooseModel(id: string): void;
  randomizeSeed(): void;
  submit(): Promise<void>;
  /** "Use these settings": every parameter of a history entry back into the form. */
  restoreFrom(g: Generation, imageIndex?: number): void;
  useAsInit(imageId: string, path: string): void;
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
  },
  seedLocked: false,
  fieldErrors: {},
  setField: (key, value) =>
    set((s) => {
      const fieldErrors = { ...s.fieldErrors };
      delete fieldErrors[key as string];
      return { form: { ...s.form, [key]: value }, fieldErrors };
    }),
  setSeedLocked: (seedLocked) => set({ seedLocked }),
  chooseModel: (id) => {
    const m = get().models.find((x) => x.id === id);
    set((s) => ({
      form: { ...s.form, modelId: id, ...(m?.nativeSize ? { width: m.nativeSize, height: m.nativeSize } : {}) },
      fieldErrors: { ...s.fieldErrors, modelId: '' },
    }));
  },
  randomizeSeed: () => set((s) => ({ form: { ...s.form, seed: randomSeed() } })),
  submit: async () => {
    const { form, seedLocked } = get();
    const candidate = { ...form, initImageId: form.initImageId ?? undefined };
    const parsed = GenerateParams.safeParse(candidate);
    if (!parsed.success) {
      const fieldErrors: Record<string, string> = {};
      for (const issue of parsed.error.issues) fieldErrors[String(issue.path[0] ?? 'form')] = issue.message;
      set({ fieldErrors });
      return;
    }
    try {
      await client.call('jobs.submit', parsed.data);
      if (!seedLocked) set((s) => ({ form: { ...s.form, seed: randomSeed() } }));
      get().remember(parsed.data.modelId);
    } catch (err) {
      const e = err as ClientError;
      get().toast('error', e.message);
    }
  },
  restoreFrom: (g, imageIndex = 0) => {
    const img = g.images[imageIndex];
    set((s) => ({
      form: {
        ...s.form,
        mode: g.mode === 'img2img' ? 'img2img' : 'txt2img',
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
      },
      seedLocked: true,
      fieldErrors: {},
      route: 'generate',
    }));
    if (!g.modelId) get().toast('info', `The model "${g.modelName}" is no longer in the library: pick another.`);
  },
  useAsInit: (imageId, path) => set((s) => ({ form: { ...s.form, mode: 'img2img', initImageId: imageId, initImagePath: path }, route: 'generate' })),
});
