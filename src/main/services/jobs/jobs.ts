/**
 * The generation queue: FIFO, one job at a time on one GPU, each cancellable
 * while queued or running. A job resolves its model and inputs, runs in the
 * worker, and lands in the history with every parameter that reproduces it.
 * A worker crash fails the job in flight with a clear error; the queue goes on.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { GenerateParams, Job, JobProgress } from '../../../shared/contract';
import { AtelierError, toErrorPayload } from '../../../shared/errors';
import type { HistoryStore } from '../history/store';
import type { ModelsService } from '../models/models';
import type { WorkerLock } from '../runtime/lock';
import type { RuntimeService } from '../runtime/runtime';
import type { SettingsService } from '../settings/settings';
import { solidPng } from '../../lib/png';

export interface JobsOptions {
  history: HistoryStore;
  models: ModelsService;
  runtime: RuntimeService;
  settings: SettingsService;
  /** Scratch folder for the worker's outputs; the library takes the files from there. */
  jobsDir: string;
  /** Shared with LoRA training: a job waits (queued) while a training has the worker. */
  lock?: WorkerLock;
  onJob?: (job: Job) => void;
  onProgress?: (p: JobProgress) => void;
  onAdded?: (generationId: string) => void;
  log?: (line: string) => void;
}

/** Finished jobs kept in memory for the UI's list (the history is the durable record). */
const KEEP_FINISHED = 50;

const familyName = (f: string) => (f === 'sdxl' ? 'SDXL' : f === 'sd15' ? 'SD 1.5' : f);

export class JobsService {
  private jobs: Job[] = [];
  private running: Job | null = null;
  private idleWaiters: (() => void)[] = [];

  constructor(private opts: JobsOptions) {
    fs.mkdirSync(opts.jobsDir, { recursive: true });
    // Outputs of jobs interrupted by a crash or a kill: never a library file, safe to drop.
    for (const e of fs.readdirSync(opts.jobsDir)) fs.rmSync(path.join(opts.jobsDir, e), { recursive: true, force: true });
  }

  list(): Job[] {
    return this.jobs.map((j) => ({ ...j }));
  }

  submit(params: GenerateParams): Job {
    const model = this.opts.models.get(params.modelId); // MODEL_NOT_FOUND before anything is queued
    if (model.kind !== 'checkpoint') throw new AtelierError('BAD_REQUEST', `${model.name} is a ${model.kind}, not a checkpoint: pick a checkpoint to generate with.`);
    // Inputs that do not exist fail now, before anything is queued.
    if (params.mode === 'img2img' && !params.canvas) this.opts.history.getImage(params.initImageId!);
    if (params.canvas) {
      this.opts.history.requireFile(params.canvas.init);
      if (params.canvas.mask) this.opts.history.requireFile(params.canvas.mask);
    }
    for (const l of params.loras) {
      const lora = this.opts.models.get(l.modelId);
      if (lora.kind !== 'lora') throw new AtelierError('BAD_REQUEST', `${lora.name} is a ${lora.kind}, not a LoRA.`);
      if (lora.family !== 'unknown' && model.family !== 'unknown' && lora.family !== model.family) {
        throw new AtelierError('BAD_REQUEST', `${lora.name} is a LoRA for ${familyName(lora.family)}, but ${model.name} is ${familyName(model.family)}: pick a LoRA made for this model's family.`);
      }
    }
    if (params.control) {
      const cn = this.opts.models.get(params.control.modelId);
      if (cn.kind !== 'controlnet') throw new AtelierError('BAD_REQUEST', `${cn.name} is a ${cn.kind}, not a ControlNet.`);
      this.opts.history.requireFile(params.control.image);
    }
    const job: Job = {
      id: randomUUID(),
      state: 'queued',
      params,
      modelName: model.name,
      createdAt: new Date().toISOString(),
      startedAt: null,
      finishedAt: null,
      step: 0,
      total: params.mode === 'txt2img' ? params.steps : Math.max(1, Math.floor(params.steps * params.strength)),
      imageIndex: 0,
      generationId: null,
      error: null,
    };
    this.jobs.push(job);
    this.changed(job);
    queueMicrotask(() => this.pump());
    return { ...job };
  }

  async cancel(id: string): Promise<boolean> {
    const job = this.jobs.find((j) => j.id === id);
    if (!job) return false;
    if (job.state === 'queued') {
      this.finish(job, 'cancelled', { code: 'CANCELLED', message: 'Cancelled before it started.' });
      return true;
    }
    if (job.state === 'running') return this.opts.runtime.cancel(id);
    return false;
  }

  /** Resolves when nothing is queued or running (tests, CLI, shutdown). */
  whenIdle(): Promise<void> {
    if (!this.running && !this.jobs.some((j) => j.state === 'queued')) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private changed(job: Job): void {
    this.opts.onJob?.({ ...job });
  }

  private finish(job: Job, state: Job['state'], error: Job['error'] = null): void {
    job.state = state;
    job.error = error;
    job.finishedAt = new Date().toISOString();
    this.changed(job);
    const finished = this.jobs.filter((j) => j.state !== 'queued' && j.state !== 'running');
    if (finished.length > KEEP_FINISHED) {
      const drop = new Set(finished.slice(0, finished.length - KEEP_FINISHED));
      this.jobs = this.jobs.filter((j) => !drop.has(j));
    }
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    const next = this.jobs.find((j) => j.state === 'queued');
    if (!next) {
      const waiters = this.idleWaiters.splice(0);
      for (const w of waiters) w();
      return;
    }
    this.running = next;
    const release = this.opts.lock ? await this.opts.lock.acquire('generation') : () => {};
    try {
      // It may have been cancelled while it waited for the worker.
      if (next.state === 'queued') await this.run(next);
    } finally {
      release();
      this.running = null;
      queueMicrotask(() => this.pump());
    }
  }

  private async run(job: Job): Promise<void> {
    const p = job.params;
    job.state = 'running';
    job.startedAt = new Date().toISOString();
    this.changed(job);
    const outDir = path.join(this.opts.jobsDir, job.id);
    try {
      const model = this.opts.models.get(p.modelId);
      const init = p.mode === 'img2img' && !p.canvas ? this.opts.history.getImage(p.initImageId!) : null;
      const settings = this.opts.settings.get();
      fs.mkdirSync(outDir, { recursive: true });
      const inputs: Record<string, unknown> = {};
      if (init) Object.assign(inputs, { strength: p.strength, init_image: init.absPath });
      if (p.canvas) {
        const c = p.canvas;
        // Nothing painted: the worker still needs a mask; the empty (transparent) area joins it there.
        const mask = c.mask ?? this.opts.history.putAsset(solidPng(c.frame.width, c.frame.height, [0])).path;
        Object.assign(inputs, { strength: p.strength, init_image: this.opts.history.requireFile(c.init) });
        if (p.mode === 'inpaint') {
          Object.assign(inputs, {
            mask_image: this.opts.history.requireFile(mask),
            mask_blur: c.maskBlur,
            mask_only: c.maskOnly,
            mask_padding: c.maskPadding,
            fill: c.fill,
          });
        }
      }
      const loras = p.loras.map((l) => ({ ...l, model: this.opts.models.get(l.modelId) }));
      if (loras.length) inputs.loras = loras.map((l) => ({ path: l.model.path, weight: l.weight }));
      if (p.control) {
        const cn = this.opts.models.get(p.control.modelId);
        inputs.control = { type: 'canny', model: cn.path, image: this.opts.history.requireFile(p.control.image), scale: p.control.scale, start: p.control.start, end: p.control.end };
      }
      const result = await this.opts.runtime.generate(
        job.id,
        {
          model: model.path,
          mode: p.mode,
          prompt: p.prompt,
          negative_prompt: p.negativePrompt,
          sampler: p.sampler,
          steps: p.steps,
          cfg: p.cfg,
          seed: p.seed,
          width: p.width,
          height: p.height,
          batch: p.batch,
          ...inputs,
          out_dir: outDir,
          preview_every: settings.previewEvery,
          preview_size: 128,
          ...(settings.memoryMode !== 'auto' ? { memory_mode: settings.memoryMode } : {}),
        },
        (e) => {
          if (e.type !== 'progress') return;
          job.step = Number(e.step);
          job.total = Number(e.total);
          job.imageIndex = Number(e.image ?? 0);
          this.opts.onProgress?.({
            jobId: job.id,
            image: job.imageIndex,
            step: job.step,
            total: job.total,
            preview: typeof e.preview === 'string' && e.preview ? `data:image/jpeg;base64,${e.preview}` : null,
          });
        },
      );
      const gen = this.opts.history.addGeneration({
        backend: 'local',
        mode: p.mode,
        prompt: p.prompt,
        negativePrompt: p.negativePrompt,
        modelId: model.id,
        modelName: model.name,
        modelHash: model.hash,
        sampler: p.sampler,
        steps: p.steps,
        cfg: p.cfg,
        seed: p.seed,
        width: p.width,
        height: p.height,
        batch: p.batch,
        strength: p.mode === 'txt2img' ? null : p.strength,
        control: p.canvas || p.control ? { canvas: p.canvas ?? null, control: p.control ?? null } : null,
        loras: loras.map((l) => ({ name: l.model.name, hash: l.model.hash, weight: l.weight, modelId: l.model.id })),
        device: result.device ? `${result.device}/${result.dtype}` : null,
        timings: result.timings,
        costUsd: null,
        params: { ...p, family: result.family, memoryMode: result.memory_mode },
        images: result.images.map((img) => ({ sourcePath: img.path, seed: img.seed, parentImageId: init?.id ?? null })),
      });
      job.generationId = gen.id;
      job.step = job.total;
      this.finish(job, 'done');
      this.opts.onAdded?.(gen.id);
    } catch (err) {
      const error = toErrorPayload(err);
      if (error.code === 'INTERNAL') this.opts.log?.(`job ${job.id}: ${(err as Error)?.stack ?? err}`);
      this.finish(job, error.code === 'CANCELLED' ? 'cancelled' : 'failed', error);
    } finally {
      fs.rmSync(outDir, { recursive: true, force: true });
    }
  }
}
