/**
 * LoRA training jobs: a row in SQLite per job (config, state, loss curve,
 * samples), run one at a time in the worker (`train`, PROTOCOL.md), holding
 * the worker lock so generations wait rather than fight for the GPU.
 *
 * Nothing is lost to a stop: pause asks the worker to cancel, which writes a
 * checkpoint first; a worker crash resumes from the last checkpoint (twice at
 * most, then the job fails and can be resumed by hand); a job that was running
 * when the app was killed comes back as "interrupted" and resumes from its
 * checkpoint with the same step count and loss curve.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { TrainingConfig as TrainingConfigSchema, type TrainingConfig, type TrainingJob, type TrainingPreset, type TrainingProgress } from '../../../shared/contract';
import { AtelierError, toErrorPayload } from '../../../shared/errors';
import { trainingPreset } from '../../../shared/training';
import type { ModelsService } from '../models/models';
import type { WorkerLock } from '../runtime/lock';
import type { RuntimeService } from '../runtime/runtime';
import type { DatasetsService } from './datasets';
import type { StoredJob, TrainingStore } from './store';

export interface TrainingOptions {
  store: TrainingStore;
  datasets: DatasetsService;
  models: ModelsService;
  runtime: RuntimeService;
  lock: WorkerLock;
  /** The library folder (sample paths are relative to it). */
  libraryDir: string;
  /** Where finished LoRAs go (a model-library root). */
  lorasDir: string;
  onChanged?: (job: TrainingJob) => void;
  onProgress?: (p: TrainingProgress) => void;
  onModelsChanged?: () => void;
  log?: (line: string) => void;
  /** How many times a crashed worker's training is resumed on its own before the job fails. */
  maxAutoResumes?: number;
}

/** Loss points are written at checkpoints and at least this often. */
const FLUSH_MS = 3000;

type WorkerTrainResult = {
  output: string;
  steps: number;
  resumed_from: number;
  loss: [number, number][];
  final_loss: number;
  skipped: { file: string; reason: string }[];
  images: number;
  seconds: number;
};

export class TrainingService {
  private running: StoredJob | null = null;
  private live = new Map<string, Pick<TrainingJob, 'loss' | 'lr' | 'itPerSec' | 'etaSec'>>();
  private stopping = new Map<string, 'pause' | 'cancel'>();
  private autoResumes = new Map<string, number>();
  private idleWaiters: (() => void)[] = [];

  constructor(private opts: TrainingOptions) {
    fs.mkdirSync(this.trainingDir, { recursive: true });
    // Jobs the last run of the app left running were cut off (a kill, a crash, a power cut).
    for (const j of opts.store.list()) {
      if (j.state === 'running') {
        j.state = 'interrupted';
        j.phase = '';
        j.message = j.checkpointStep
          ? `Atelier stopped during training. Resume continues from the checkpoint at step ${j.checkpointStep} of ${j.total}.`
          : 'Atelier stopped before the first checkpoint. Resume starts the training again.';
        opts.store.truncateLoss(j.id, j.checkpointStep);
        j.step = j.checkpointStep;
        opts.store.save(j);
      }
    }
    queueMicrotask(() => this.pump());
  }

  private get trainingDir(): string {
    return path.join(this.opts.libraryDir, 'training');
  }

  private outDir(id: string): string {
    return path.join(this.trainingDir, id);
  }

  private view(j: StoredJob): TrainingJob {
    const { outputPath: _o, ...rest } = j;
    return { ...rest, ...(this.live.get(j.id) ?? {}) };
  }

  private changed(j: StoredJob, persist = true): void {
    if (persist) this.opts.store.save(j);
    this.opts.onChanged?.(this.view(j));
  }

  list(): TrainingJob[] {
    return this.opts.store.list().map((j) => this.view(this.running?.id === j.id ? this.running : j));
  }

  get(id: string): TrainingJob & { lossHistory: [number, number][] } {
    const j = this.running?.id === id ? this.running : this.opts.store.get(id);
    if (this.running?.id === id) this.flush(this.running);
    return { ...this.view(j), lossHistory: this.opts.store.loss(id) };
  }

  async preset(modelId: string): Promise<TrainingPreset> {
    const model = this.opts.models.get(modelId);
    if (model.kind !== 'checkpoint') throw new AtelierError('BAD_REQUEST', `${model.name} is a ${model.kind}: LoRAs are trained on a checkpoint.`);
    await this.opts.runtime.ensureStarted().catch(() => null);
    const dev = this.opts.runtime.status().devices[0] ?? null;
    const row = trainingPreset(model.family, dev, model.nativeSize);
    return {
      label: row.label,
      family: model.family,
      vramMb: dev?.vramMb ?? 0,
      config: TrainingConfigSchema.parse(row.config),
      note: row.note,
    };
  }

  start(input: { name: string; datasetId: string; modelId: string; config: TrainingConfig }): TrainingJob {
    const model = this.opts.models.get(input.modelId);
    if (model.kind !== 'checkpoint') throw new AtelierError('BAD_REQUEST', `${model.name} is a ${model.kind}: LoRAs are trained on a checkpoint.`);
    const dataset = this.opts.datasets.get(input.datasetId);
    if (!dataset.images.length) throw new AtelierError('BAD_REQUEST', `The dataset ${dataset.name} has no images yet: add 20-50 images of your subject or style.`);
    if (input.config.samplePrompts.length === 0 && input.config.sampleEvery > 0) {
      const first = dataset.images.find((i) => i.caption)?.caption ?? '';
      input.config.samplePrompts = [[dataset.trigger, first].filter(Boolean).join(', ') || dataset.name];
    }
    fs.mkdirSync(this.opts.lorasDir, { recursive: true });
    let file = path.join(this.opts.lorasDir, `${input.name}.safetensors`);
    const taken = new Set(this.opts.store.list().map((j) => j.outputPath));
    for (let i = 2; fs.existsSync(file) || taken.has(file); i++) file = path.join(this.opts.lorasDir, `${input.name}-${i}.safetensors`);
    const now = new Date().toISOString();
    const job: StoredJob = {
      id: randomUUID(),
      name: path.basename(file, '.safetensors'),
      datasetId: dataset.id,
      datasetName: dataset.name,
      modelId: model.id,
      modelName: model.name,
      trigger: dataset.trigger,
      config: input.config,
      state: 'queued',
      phase: '',
      message: this.running ? 'Waiting for the training in progress to finish.' : 'Starting…',
      step: 0,
      total: input.config.steps,
      loss: null,
      lr: null,
      itPerSec: null,
      etaSec: null,
      checkpointStep: 0,
      images: dataset.images.length,
      skipped: [],
      samples: [],
      outputModelId: null,
      outputPath: file,
      error: null,
      createdAt: now,
      updatedAt: now,
      seconds: 0,
    };
    this.opts.store.insert(job);
    this.changed(job, false);
    queueMicrotask(() => this.pump());
    return this.view(job);
  }

  async pause(id: string): Promise<TrainingJob> {
    const j = this.opts.store.get(id);
    if (this.running?.id === id) {
      this.stopping.set(id, 'pause');
      this.running.message = 'Pausing: writing a checkpoint…';
      this.changed(this.running, false);
      await this.opts.runtime.cancel(id);
      return this.view(this.running ?? this.opts.store.get(id));
    }
    if (j.state === 'queued') {
      j.state = 'paused';
      j.message = 'Paused before it started.';
      this.changed(j);
      return this.view(j);
    }
    throw new AtelierError('BAD_REQUEST', `The training ${j.name} is ${j.state}; only a running or queued training can be paused.`);
  }

  resume(id: string): TrainingJob {
    const j = this.opts.store.get(id);
    if (!['paused', 'interrupted', 'failed'].includes(j.state)) throw new AtelierError('BAD_REQUEST', `The training ${j.name} is ${j.state}; only a paused, interrupted or failed training can be resumed.`);
    j.state = 'queued';
    j.error = null;
    j.message = j.checkpointStep ? `Resuming from step ${j.checkpointStep}…` : 'Starting again…';
    this.autoResumes.delete(id);
    this.changed(j);
    queueMicrotask(() => this.pump());
    return this.view(j);
  }

  async cancel(id: string): Promise<TrainingJob> {
    const j = this.opts.store.get(id);
    if (this.running?.id === id) {
      this.stopping.set(id, 'cancel');
      await this.opts.runtime.cancel(id);
      return this.view(this.running ?? this.opts.store.get(id));
    }
    if (['done', 'cancelled'].includes(j.state)) return this.view(j);
    j.state = 'cancelled';
    j.message = 'Cancelled.';
    this.changed(j);
    fs.rmSync(this.outDir(id), { recursive: true, force: true });
    return this.view(j);
  }

  delete(id: string): boolean {
    if (this.running?.id === id) throw new AtelierError('BAD_REQUEST', 'Stop the training before deleting it.');
    this.opts.store.get(id);
    fs.rmSync(this.outDir(id), { recursive: true, force: true });
    return this.opts.store.delete(id);
  }

  /** Resolves when no training is queued or running (tests, shutdown). */
  whenIdle(): Promise<void> {
    if (!this.running && !this.opts.store.list().some((j) => j.state === 'queued')) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  // ---------------------------------------------------------------- running

  private pendingLoss = new Map<string, [number, number][]>();
  private lastFlush = 0;

  private flush(j: StoredJob): void {
    const pts = this.pendingLoss.get(j.id);
    if (pts?.length) {
      this.opts.store.addLoss(j.id, pts);
      this.pendingLoss.set(j.id, []);
    }
    this.lastFlush = Date.now();
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    const next = this.opts.store
      .list()
      .reverse()
      .find((j) => j.state === 'queued');
    if (!next) {
      for (const w of this.idleWaiters.splice(0)) w();
      return;
    }
    this.running = next;
    next.message = 'Waiting for the worker (a generation is running)…';
    this.changed(next, false);
    const release = await this.opts.lock.acquire(`training:${next.id}`);
    try {
      // Paused or cancelled while it waited.
      const fresh = this.opts.store.get(next.id);
      if (fresh.state === 'queued') await this.run(next);
    } finally {
      release();
      this.running = null;
      this.live.delete(next.id);
      queueMicrotask(() => this.pump());
    }
  }

  private async run(j: StoredJob): Promise<void> {
    const c = j.config;
    const model = this.opts.models.get(j.modelId);
    const outDir = this.outDir(j.id);
    fs.mkdirSync(outDir, { recursive: true });
    j.state = 'running';
    j.phase = 'loading';
    j.message = j.checkpointStep ? `Resuming from step ${j.checkpointStep}…` : 'Loading the base model…';
    j.error = null;
    this.opts.store.truncateLoss(j.id, j.checkpointStep);
    this.pendingLoss.set(j.id, []);
    this.changed(j);
    const started = Date.now();
    const secondsBefore = j.seconds;
    let lastEmit = 0;
    try {
      const datasetDir = this.opts.datasets.folder(j.datasetId);
      const result = await this.opts.runtime.train(
        j.id,
        {
          model: model.path,
          dataset: datasetDir,
          out_dir: outDir,
          output: j.outputPath!,
          trigger: j.trigger,
          resolution: c.resolution,
          rank: c.rank,
          alpha: c.alpha,
          lr: c.lr,
          steps: c.steps,
          batch: c.batch,
          seed: c.seed,
          optimizer: c.optimizer,
          text_encoder: c.textEncoder,
          lr_scheduler: c.lrScheduler,
          warmup_steps: c.warmupSteps,
          mixed_precision: c.mixedPrecision,
          gradient_checkpointing: c.gradientCheckpointing,
          checkpoint_every: c.checkpointEvery,
          sample_every: c.sampleEvery,
          sample_prompts: c.samplePrompts,
          sample_seed: c.sampleSeed,
          sample_steps: c.sampleSteps,
          resume: true,
          metadata: { job_id: j.id, dataset_name: j.datasetName },
        },
        (e) => this.onEvent(j, e, () => {
          const now = Date.now();
          if (now - lastEmit > 500) {
            lastEmit = now;
            j.seconds = secondsBefore + (now - started) / 1000;
            this.changed(j, false);
          }
          if (now - this.lastFlush > FLUSH_MS) this.flush(j);
        }),
      ) as WorkerTrainResult;
      this.opts.store.replaceLoss(j.id, result.loss);
      this.pendingLoss.delete(j.id);
      j.step = result.steps;
      j.total = result.steps;
      j.checkpointStep = result.steps;
      j.images = result.images;
      j.skipped = result.skipped;
      j.seconds = secondsBefore + (Date.now() - started) / 1000;
      try {
        const rec = this.opts.models.register(result.output, 'library');
        j.outputModelId = rec.id;
        this.opts.onModelsChanged?.();
      } catch (err) {
        this.opts.log?.(`training ${j.id}: the LoRA was written to ${result.output} but could not be added to the library: ${(err as Error).message}`);
      }
      j.state = 'done';
      j.phase = 'done';
      j.message = `Done: ${result.steps} steps in ${fmtDuration(j.seconds)}, final loss ${result.final_loss.toFixed(4)}. The LoRA ${j.name} is in the library.`;
      this.changed(j);
      // The checkpoint and latent cache are only for resuming; the samples stay with the job.
      fs.rmSync(path.join(outDir, 'checkpoint'), { recursive: true, force: true });
      fs.rmSync(path.join(outDir, 'cache'), { recursive: true, force: true });
    } catch (err) {
      this.flush(j);
      j.seconds = secondsBefore + (Date.now() - started) / 1000;
      const error = toErrorPayload(err);
      const stop = this.stopping.get(j.id);
      this.stopping.delete(j.id);
      j.phase = '';
      // Steps after the checkpoint are redone by a resume.
      j.step = j.checkpointStep;
      this.opts.store.truncateLoss(j.id, j.checkpointStep);
      if (error.code === 'CANCELLED' && stop === 'pause') {
        j.state = 'paused';
        j.message = `Paused at step ${j.checkpointStep} of ${j.total}. Resume continues from there.`;
      } else if (error.code === 'CANCELLED') {
        j.state = 'cancelled';
        j.message = 'Cancelled.';
        fs.rmSync(outDir, { recursive: true, force: true });
      } else if (error.code === 'RUNTIME_CRASHED' && (this.autoResumes.get(j.id) ?? 0) < (this.opts.maxAutoResumes ?? 2)) {
        this.autoResumes.set(j.id, (this.autoResumes.get(j.id) ?? 0) + 1);
        j.state = 'queued';
        // The crash message ends with a generation's "Your job failed…"; this job goes on by itself.
        j.message = `${error.message.replace(/\s*Your job failed;[^.]*\.\s*$/, '')} Resuming from step ${j.checkpointStep}…`;
      } else {
        j.state = 'failed';
        j.error = error;
        j.message = error.message;
        if (error.code === 'INTERNAL') this.opts.log?.(`training ${j.id}: ${(err as Error)?.stack ?? err}`);
      }
      this.changed(j);
    }
  }

  private onEvent(j: StoredJob, e: Record<string, unknown>, tick: () => void): void {
    switch (e.type) {
      case 'train_status': {
        j.phase = String(e.phase ?? '');
        j.message = String(e.message ?? '');
        if (Array.isArray(e.skipped)) j.skipped = e.skipped as StoredJob['skipped'];
        if (typeof e.images === 'number') j.images = e.images;
        this.changed(j, e.phase !== 'training' && e.phase !== 'sampling');
        break;
      }
      case 'train_progress': {
        const step = Number(e.step);
        j.step = step;
        j.total = Number(e.total);
        j.phase = 'training';
        const p: TrainingProgress = {
          jobId: j.id,
          step,
          total: j.total,
          loss: num(e.loss),
          lossAvg: num(e.loss_avg ?? e.loss),
          lr: num(e.lr),
          itPerSec: num(e.it_s),
          etaSec: num(e.eta_s),
        };
        this.live.set(j.id, { loss: p.lossAvg, lr: p.lr, itPerSec: p.itPerSec, etaSec: p.etaSec });
        j.message = `Step ${step} of ${j.total}`;
        this.pendingLoss.get(j.id)?.push([step, p.loss]);
        this.opts.onProgress?.(p);
        tick();
        break;
      }
      case 'train_sample': {
        const images = (e.images as { path: string; prompt: string; seed: number }[]) ?? [];
        for (const im of images) {
          const rel = path.relative(this.opts.libraryDir, im.path).split(path.sep).join('/');
          if (rel.startsWith('..')) continue;
          j.samples = [...j.samples.filter((s) => !(s.step === Number(e.step) && s.path === rel)), { step: Number(e.step), path: rel, prompt: im.prompt, seed: im.seed }];
        }
        this.changed(j);
        break;
      }
      case 'train_checkpoint': {
        j.checkpointStep = Number(e.step);
        this.flush(j);
        this.changed(j);
        break;
      }
      default:
        break;
    }
  }
}

function num(v: unknown): number {
  const n = Number(v);
  return Number.isFinite(n) ? n : 0;
}

function fmtDuration(s: number): string {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
