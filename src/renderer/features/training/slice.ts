/**
 * The Train page's state: datasets (the list, the open one, the last import's
 * report), the train form with its preset, and the training jobs with the
 * live progress and loss curve of the open one.
 *
 * Names are prefixed (trainingJobs, trainForm…) because every slice shares one
 * store with the generate form and the generation jobs.
 */
import {
  methods,
  TrainingConfig as TrainingConfigSchema,
  type Dataset,
  type DatasetSummary,
  type SkippedFile,
  type TrainingConfig,
  type TrainingJob,
  type TrainingPreset,
  type TrainingProgress,
} from '../../../shared/contract';
import type { SliceCreator } from '../../app/store';
import { client, ClientError } from '../../lib/client';
import { fieldErrorsFrom, loraNameFrom, planUpload, stemOf, type LossPoint } from './format';

export interface TrainForm {
  name: string;
  /** The name follows the dataset's until the user types one. */
  nameAuto: boolean;
  modelId: string;
  /** Numbers may be NaN while a field is being typed; validation names them. */
  config: TrainingConfig;
  /** Sample prompts, one per line. */
  samplePrompts: string;
}

export interface ImportReport {
  datasetId: string;
  /** What was imported: "8 files" or a folder path. */
  source: string;
  added: string[];
  skipped: SkippedFile[];
  /** Captions that went to images already in the dataset. */
  captions: string[];
  /** The import failed as a whole (a folder that cannot be opened). */
  error: string | null;
}

export interface UploadProgress {
  done: number;
  total: number;
  phase: string;
}

export interface LossCurve {
  jobId: string;
  points: LossPoint[];
  /** training.get is in flight: progress events wait in `held` and continue its answer. */
  loading: boolean;
  held: LossPoint[];
}

export type TrainingView = 'dataset' | 'job';

export interface TrainingSlice {
  datasets: DatasetSummary[];
  datasetsLoaded: boolean;
  datasetId: string | null;
  dataset: Dataset | null;
  importReport: ImportReport | null;
  upload: UploadProgress | null;
  trainingJobs: TrainingJob[];
  trainingView: TrainingView;
  openJobId: string | null;
  lossCurve: LossCurve | null;
  trainProgress: Record<string, TrainingProgress>;
  trainForm: TrainForm;
  trainPreset: TrainingPreset | null;
  trainPresetLoading: boolean;
  trainErrors: Record<string, string>;
  trainBusy: boolean;

  loadDatasets(): Promise<void>;
  selectDataset(id: string | null): Promise<void>;
  onDatasetChanged(id: string): void;
  /** Throws a ClientError the dialog shows. */
  createDataset(name: string, trigger: string): Promise<void>;
  /** Throws a ClientError the editor shows. */
  updateDataset(patch: { name?: string; trigger?: string }): Promise<void>;
  deleteDataset(id: string): Promise<void>;
  addDatasetFiles(files: File[]): Promise<void>;
  importDatasetFolder(folder: string): Promise<void>;
  /** Throws on failure (the caption card shows it). */
  setDatasetCaption(file: string, caption: string): Promise<string>;
  removeDatasetImage(file: string): Promise<void>;
  dismissImportReport(): void;

  loadTraining(): Promise<void>;
  openTrainingJob(id: string | null): Promise<void>;
  applyTrainingJob(job: TrainingJob): void;
  applyTrainingProgress(p: TrainingProgress): void;
  setTrainField<K extends 'name' | 'samplePrompts'>(key: K, value: TrainForm[K]): void;
  setTrainConfig<K extends keyof TrainingConfig>(key: K, value: TrainingConfig[K]): void;
  chooseBaseModel(id: string): Promise<void>;
  startTraining(): Promise<void>;
  pauseTraining(id: string): Promise<void>;
  resumeTraining(id: string): Promise<void>;
  cancelTraining(id: string): Promise<void>;
  deleteTraining(id: string): Promise<void>;
}

const defaultConfig = (): TrainingConfig => TrainingConfigSchema.parse({});

/** FileReader gives base64 without copying the bytes through a JS string of char codes. */
function readBase64(file: File): Promise<string> {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => {
      const url = String(r.result);
      resolve(url.slice(url.indexOf(',') + 1));
    };
    r.onerror = () => reject(r.error ?? new Error('cannot be read'));
    r.readAsDataURL(file);
  });
}

let datasetSeq = 0;
let listTimer: ReturnType<typeof setTimeout> | null = null;
let datasetTimer: ReturnType<typeof setTimeout> | null = null;
let presetSeq = 0;

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

export const createTrainingSlice: SliceCreator<TrainingSlice> = (set, get) => ({
  datasets: [],
  datasetsLoaded: false,
  datasetId: null,
  dataset: null,
  importReport: null,
  upload: null,
  trainingJobs: [],
  trainingView: 'dataset',
  openJobId: null,
  lossCurve: null,
  trainProgress: {},
  trainForm: { name: '', nameAuto: true, modelId: '', config: defaultConfig(), samplePrompts: '' },
  trainPreset: null,
  trainPresetLoading: false,
  trainErrors: {},
  trainBusy: false,

  // ---------------------------------------------------------------- datasets

  loadDatasets: async () => {
    const datasets = await client.call('datasets.list');
    set({ datasets, datasetsLoaded: true });
    const { datasetId } = get();
    if (datasetId && !datasets.some((d) => d.id === datasetId)) set({ datasetId: null, dataset: null });
    else if (!datasetId && datasets.length && get().trainingView === 'dataset') void get().selectDataset(datasets[0].id);
  },

  selectDataset: async (id) => {
    const mine = ++datasetSeq;
    set((s) => ({
      datasetId: id,
      trainingView: 'dataset',
      dataset: s.dataset?.id === id ? s.dataset : null,
      importReport: s.importReport?.datasetId === id ? s.importReport : null,
      trainErrors: {},
    }));
    if (!id) return;
    try {
      const dataset = await client.call('datasets.get', { id });
      if (mine !== datasetSeq) return;
      set((s) => ({
        dataset,
        trainForm: s.trainForm.nameAuto ? { ...s.trainForm, name: loraNameFrom(dataset.name) } : s.trainForm,
      }));
    } catch (err) {
      if (mine !== datasetSeq) return;
      set({ datasetId: null, dataset: null });
      get().toast('error', message(err));
    }
  },

  onDatasetChanged: (id) => {
    // An import sends one event per batch, a caption edit one per blur: coalesce them.
    if (listTimer) clearTimeout(listTimer);
    listTimer = setTimeout(() => void get().loadDatasets().catch(() => {}), 150);
    if (id === get().datasetId) {
      if (datasetTimer) clearTimeout(datasetTimer);
      datasetTimer = setTimeout(async () => {
        const mine = ++datasetSeq;
        try {
          const dataset = await client.call('datasets.get', { id });
          if (mine === datasetSeq && get().datasetId === id) set({ dataset });
        } catch (err) {
          if (err instanceof ClientError && err.code === 'NOT_FOUND' && get().datasetId === id) set({ datasetId: null, dataset: null });
        }
      }, 150);
    }
  },

  createDataset: async (name, trigger) => {
    const d = await client.call('datasets.create', { name, trigger });
    set((s) => ({
      datasets: [{ id: d.id, name: d.name, trigger: d.trigger, createdAt: d.createdAt, imageCount: 0, cover: null }, ...s.datasets.filter((x) => x.id !== d.id)],
      trainForm: { ...s.trainForm, nameAuto: true },
    }));
    await get().selectDataset(d.id);
  },

  updateDataset: async (patch) => {
    const id = get().datasetId;
    if (!id) return;
    const dataset = await client.call('datasets.update', { id, ...patch });
    set((s) => ({
      dataset,
      datasets: s.datasets.map((d) => (d.id === id ? { ...d, name: dataset.name, trigger: dataset.trigger } : d)),
      trainForm: s.trainForm.nameAuto ? { ...s.trainForm, name: loraNameFrom(dataset.name) } : s.trainForm,
    }));
  },

  deleteDataset: async (id) => {
    try {
      await client.call('datasets.delete', { id });
      set((s) => ({
        datasets: s.datasets.filter((d) => d.id !== id),
        ...(s.datasetId === id ? { datasetId: null, dataset: null, importReport: null } : {}),
      }));
      const next = get().datasets[0];
      if (!get().datasetId && next) void get().selectDataset(next.id);
    } catch (err) {
      get().toast('error', message(err));
    }
  },

  addDatasetFiles: async (files) => {
    const id = get().datasetId;
    if (!id || !files.length) return;
    if (get().upload) {
      get().toast('info', 'Wait for the files being added to finish.');
      return;
    }
    const plan = planUpload(files);
    const report: ImportReport = {
      datasetId: id,
      source: `${files.length} ${files.length === 1 ? 'file' : 'files'}`,
      added: [],
      skipped: [...plan.skipped],
      captions: [],
      error: null,
    };
    const total = plan.batches.reduce((a, b) => a + b.length, 0) + plan.orphanCaptions.length;
    set({ upload: { done: 0, total, phase: 'Reading' }, importReport: null });
    let done = 0;
    try {
      for (const batch of plan.batches) {
        set({ upload: { done, total, phase: 'Reading' } });
        const payload: { name: string; data: string }[] = [];
        for (const f of batch) {
          try {
            payload.push({ name: f.name, data: await readBase64(f) });
          } catch (err) {
            report.skipped.push({ file: f.name, reason: `cannot be read (${message(err)})` });
          }
        }
        set({ upload: { done, total, phase: 'Adding' } });
        if (payload.some((p) => !/\.txt$/i.test(p.name))) {
          try {
            const r = await client.call('datasets.addFiles', { id, files: payload });
            report.added.push(...r.added);
            report.skipped.push(...r.skipped);
            if (get().datasetId === id) set({ dataset: r.dataset });
          } catch (err) {
            for (const p of payload) report.skipped.push({ file: p.name, reason: message(err) });
          }
        }
        done += batch.length;
        set({ upload: { done, total, phase: 'Adding' } });
      }
      // A caption dropped alone goes to the image of the same name already in the dataset.
      const inDataset = new Map((get().dataset?.id === id ? get().dataset!.images : []).map((im) => [stemOf(im.file).toLowerCase(), im.file]));
      const addedStems = new Map(report.added.map((f) => [stemOf(f).toLowerCase(), f]));
      for (const c of plan.orphanCaptions) {
        const stem = stemOf(c.name).toLowerCase();
        const target = inDataset.get(stem) ?? addedStems.get(stem);
        if (!target) {
          report.skipped.push({ file: c.name, reason: `a caption with no image named "${stemOf(c.name)}" among the files or in the dataset` });
        } else {
          try {
            await client.call('datasets.setCaption', { id, file: target, caption: await c.text() });
            report.captions.push(target);
          } catch (err) {
            report.skipped.push({ file: c.name, reason: message(err) });
          }
        }
        done++;
        set({ upload: { done, total, phase: 'Captions' } });
      }
    } finally {
      set({ upload: null, importReport: report });
    }
  },

  importDatasetFolder: async (folder) => {
    const id = get().datasetId;
    if (!id) return;
    set({ upload: { done: 0, total: 0, phase: 'Importing' }, importReport: null });
    try {
      const r = await client.call('datasets.importFolder', { id, folder });
      if (get().datasetId === id) set({ dataset: r.dataset });
      set({ importReport: { datasetId: id, source: folder, added: r.added, skipped: r.skipped, captions: [], error: null } });
    } catch (err) {
      set({ importReport: { datasetId: id, source: folder, added: [], skipped: [], captions: [], error: message(err) } });
    } finally {
      set({ upload: null });
    }
  },

  setDatasetCaption: async (file, caption) => {
    const id = get().datasetId;
    if (!id) throw new Error('No dataset is open.');
    const img = await client.call('datasets.setCaption', { id, file, caption });
    set((s) => (s.dataset?.id === id ? { dataset: { ...s.dataset, images: s.dataset.images.map((i) => (i.file === file ? img : i)) } } : s));
    return img.caption;
  },

  removeDatasetImage: async (file) => {
    const id = get().datasetId;
    if (!id) return;
    try {
      const dataset = await client.call('datasets.removeImage', { id, file });
      if (get().datasetId === id) set({ dataset });
    } catch (err) {
      get().toast('error', message(err));
    }
  },

  dismissImportReport: () => set({ importReport: null }),

  // ---------------------------------------------------------------- training

  loadTraining: async () => {
    const trainingJobs = await client.call('training.list');
    set({ trainingJobs });
    const open = get().openJobId;
    if (open && trainingJobs.some((j) => j.id === open)) void get().openTrainingJob(open);
  },

  openTrainingJob: async (id) => {
    if (!id) {
      set({ openJobId: null, lossCurve: null, trainingView: 'dataset' });
      return;
    }
    // A reload of the open job keeps drawing the old curve until the new one is here.
    set((s) => ({ openJobId: id, trainingView: 'job', lossCurve: { jobId: id, points: s.lossCurve?.jobId === id ? s.lossCurve.points : [], loading: true, held: [] } }));
    try {
      const { lossHistory, ...job } = await client.call('training.get', { id });
      if (get().openJobId !== id) return;
      set((s) => {
        // Progress that arrived while the history was on its way continues it.
        const held = s.lossCurve?.jobId === id ? s.lossCurve.held : [];
        const last = lossHistory.length ? lossHistory[lossHistory.length - 1][0] : -1;
        const points = [...(lossHistory as LossPoint[]), ...held.filter((p) => p[0] > last)];
        const i = s.trainingJobs.findIndex((j) => j.id === id);
        const trainingJobs = i >= 0 ? s.trainingJobs.map((j) => (j.id === id ? job : j)) : [job, ...s.trainingJobs];
        return { lossCurve: { jobId: id, points, loading: false, held: [] }, trainingJobs };
      });
    } catch (err) {
      if (get().openJobId !== id) return;
      set((s) => ({ lossCurve: { jobId: id, points: s.lossCurve?.jobId === id ? s.lossCurve.points : [], loading: false, held: [] } }));
      if (err instanceof ClientError && err.code === 'NOT_FOUND') {
        set((s) => ({ openJobId: null, trainingView: 'dataset', trainingJobs: s.trainingJobs.filter((j) => j.id !== id) }));
      }
      get().toast('error', message(err));
    }
  },

  applyTrainingJob: (job) => {
    const before = get().trainingJobs.find((j) => j.id === job.id);
    set((s) => {
      const i = s.trainingJobs.findIndex((j) => j.id === job.id);
      const trainingJobs = i >= 0 ? s.trainingJobs.map((j) => (j.id === job.id ? job : j)) : [job, ...s.trainingJobs];
      let trainProgress = s.trainProgress;
      if (job.state !== 'running' && trainProgress[job.id]) {
        trainProgress = { ...trainProgress };
        delete trainProgress[job.id];
      }
      return { trainingJobs, trainProgress };
    });
    // A stop rolls the curve back to the checkpoint, and the end replaces it with the worker's: reload it.
    if (job.id === get().openJobId && before && before.state !== job.state && job.state !== 'running') void get().openTrainingJob(job.id);
  },

  applyTrainingProgress: (p) =>
    set((s) => {
      const out: Partial<TrainingSlice> = { trainProgress: { ...s.trainProgress, [p.jobId]: p } };
      const curve = s.lossCurve;
      if (curve && curve.jobId === p.jobId && Number.isFinite(p.loss)) {
        // A resume redoes the steps after the checkpoint: drop what they replace.
        const append = (list: LossPoint[]) => {
          let keep = list.length;
          while (keep > 0 && list[keep - 1][0] >= p.step) keep--;
          const next = list.slice(0, keep);
          next.push([p.step, p.loss]);
          return next;
        };
        out.lossCurve = curve.loading ? { ...curve, held: append(curve.held) } : { ...curve, points: append(curve.points) };
      }
      return out;
    }),

  setTrainField: (key, value) =>
    set((s) => {
      const trainErrors = { ...s.trainErrors };
      delete trainErrors[key];
      delete trainErrors.form;
      return { trainForm: { ...s.trainForm, [key]: value, ...(key === 'name' ? { nameAuto: false } : {}) }, trainErrors };
    }),

  setTrainConfig: (key, value) =>
    set((s) => {
      const trainErrors = { ...s.trainErrors };
      delete trainErrors[key];
      delete trainErrors.form;
      return { trainForm: { ...s.trainForm, config: { ...s.trainForm.config, [key]: value } }, trainErrors };
    }),

  chooseBaseModel: async (id) => {
    const mine = ++presetSeq;
    set((s) => {
      const trainErrors = { ...s.trainErrors };
      delete trainErrors.modelId;
      return { trainForm: { ...s.trainForm, modelId: id }, trainPreset: null, trainPresetLoading: !!id, trainErrors };
    });
    if (!id) return;
    try {
      const preset = await client.call('training.preset', { modelId: id });
      if (mine !== presetSeq) return;
      set((s) => ({
        trainPreset: preset,
        trainPresetLoading: false,
        // Every field from the preset; the sample prompts are the user's own.
        trainForm: { ...s.trainForm, config: { ...preset.config, samplePrompts: s.trainForm.config.samplePrompts } },
      }));
    } catch (err) {
      if (mine !== presetSeq) return;
      set({ trainPresetLoading: false });
      get().toast('error', `No preset for that model: ${message(err)}`);
    }
  },

  startTraining: async () => {
    const { trainForm: f, datasetId } = get();
    if (!datasetId) return;
    const input = {
      name: f.name,
      datasetId,
      modelId: f.modelId,
      config: {
        ...f.config,
        samplePrompts: f.samplePrompts
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean),
      },
    };
    const parsed = methods['training.start'].input.safeParse(input);
    if (!parsed.success) {
      const trainErrors: Record<string, string> = {};
      for (const issue of parsed.error.issues) {
        const path = issue.path.map(String);
        const key = path[0] === 'config' && path.length > 1 ? path[1] : (path[0] ?? 'form');
        trainErrors[key] ??= issue.message;
      }
      set({ trainErrors });
      return;
    }
    set({ trainBusy: true, trainErrors: {} });
    try {
      const job = await client.call('training.start', parsed.data);
      get().applyTrainingJob(job);
      await get().openTrainingJob(job.id);
    } catch (err) {
      const e = err as ClientError;
      set({ trainErrors: e.code === 'BAD_REQUEST' ? fieldErrorsFrom(e.message) : { form: e.message } });
    } finally {
      set({ trainBusy: false });
    }
  },

  pauseTraining: async (id) => {
    try {
      get().applyTrainingJob(await client.call('training.pause', { id }));
    } catch (err) {
      get().toast('error', message(err));
    }
  },
  resumeTraining: async (id) => {
    try {
      get().applyTrainingJob(await client.call('training.resume', { id }));
    } catch (err) {
      get().toast('error', message(err));
    }
  },
  cancelTraining: async (id) => {
    try {
      get().applyTrainingJob(await client.call('training.cancel', { id }));
    } catch (err) {
      get().toast('error', message(err));
    }
  },
  deleteTraining: async (id) => {
    try {
      await client.call('training.delete', { id });
      set((s) => ({
        trainingJobs: s.trainingJobs.filter((j) => j.id !== id),
        ...(s.openJobId === id ? { openJobId: null, lossCurve: null, trainingView: 'dataset' as const } : {}),
      }));
    } catch (err) {
      get().toast('error', message(err));
    }
  },
});
