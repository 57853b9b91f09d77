/**
 * The generation queue: FIFO, one job at a time on one GPU, each cancellable
 * while queued or running. A job resolves its model and inputs, runs in the
 * worker, and lands in the history with every parameter that reproduces it.
 * A worker crash fails the job in flight with a clear error; the queue goes on.
 */
import { createHash, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { GenerateParams, type Job, type JobProgress } from '../../../shared/contract';
import { AtelierError, toErrorPayload } from '../../../shared/errors';
import { cloudModel } from '../../../shared/cloud';
import { appendStyle, findBlockedTerms } from '../../../shared/prompts';
import type { CloudService } from '../cloud/cloud';
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
  /** The OpenAI backend (jobs with backend 'cloud'); absent: such jobs fail with a clear message. */
  cloud?: CloudService;
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

/**
 * The result cache's key: a content hash of everything that decides the pixels
 * (model and LoRA hashes, every parameter, the seed, and the inputs: history
 * images by their sha256, canvas and control images by their content-addressed
 * asset paths). `noCache` itself is not part of it.
 */
export function cacheKey(p: GenerateParams, hashes: { model: string; loras: (string | null)[]; control: string | null; init: string | null }): string {
  const { noCache: _n, modelId: _m, initImageId: _i, ...rest } = p;
  const body = {
    v: 1,
    ...rest,
    loras: p.loras.map((l, i) => ({ hash: hashes.loras[i] ?? l.modelId, weight: l.weight })),
    control: p.control ? { ...p.control, modelId: undefined, model: hashes.control ?? p.control.modelId } : null,
    model: hashes.model,
    init: hashes.init,
  };
  return createHash('sha256').update(stableJson(body)).digest('hex');
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    return `{${Object.keys(v as object)
      .sort()
      .filter((k) => (v as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${stableJson((v as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

const familyName = (f: string) => (f === 'sdxl' ? 'SDXL' : f === 'sd15' ? 'SD 1.5' : f);

export class JobsService {
  private jobs: Job[] = [];
  private running: Job | null = null;
  private cloudAborts = new Map<string, AbortController>();
  private idleWaiters: (() => void)[] = [];

  constructor(private opts: JobsOptions) {
    fs.mkdirSync(opts.jobsDir, { recursive: true });
    // Outputs of jobs interrupted by a crash or a kill: never a library file, safe to drop.
    for (const e of fs.readdirSync(opts.jobsDir)) fs.rmSync(path.join(opts.jobsDir, e), { recursive: true, force: true });
    // The queue survives a restart: what was waiting (or running) when the app stopped runs again.
    for (const q of opts.history.queueList()) {
      const parsed = GenerateParams.safeParse(q.params);
      const job = this.newJob(parsed.success ? parsed.data : (q.params as GenerateParams), q.modelName, q.id, q.createdAt);
      this.jobs.push(job);
      if (!parsed.success) this.finish(job, 'failed', { code: 'BAD_REQUEST', message: 'This queued job was saved by another version of Atelier and cannot run; retry it from the history.' });
    }
    if (this.jobs.length) queueMicrotask(() => this.pump());
  }

  private newJob(params: GenerateParams, modelName: string, id: string = randomUUID(), createdAt = new Date().toISOString()): Job {
    return {
      id,
      state: 'queued',
      cached: false,
      params,
      modelName,
      createdAt,
      startedAt: null,
      finishedAt: null,
      step: 0,
      total: params.backend === 'cloud' ? 1 : params.mode === 'txt2img' ? params.steps : Math.max(1, Math.floor(params.steps * params.strength)),
      imageIndex: 0,
      generationId: null,
      error: null,
      note: null,
    };
  }

  list(): Job[] {
    return this.jobs.map((j) => ({ ...j }));
  }

  submit(params: GenerateParams): Job {
    return this.submitMany([params])[0];
  }

  /** Queue several jobs in order; all are checked first, so a bad one queues none. */
  submitMany(items: GenerateParams[]): Job[] {
    const { styleSuffix } = this.opts.settings.get();
    // The suffix becomes part of the prompt (stored, searchable, reproducible); appendStyle is
    // idempotent, so re-running an entry that already has it does not add it twice.
    const prepared = items.map((p) => (styleSuffix.trim() ? { ...p, prompt: appendStyle(p.prompt, styleSuffix) } : p));
    const jobs = prepared.map((p) => this.newJob(p, this.check(p).name));
    this.opts.history.queuePut(jobs.map((j) => ({ id: j.id, params: j.params, modelName: j.modelName, createdAt: j.createdAt })));
    for (const j of jobs) {
      this.jobs.push(j);
      this.changed(j);
    }
    queueMicrotask(() => this.pump());
    return jobs.map((j) => ({ ...j }));
  }

  /** Move a queued job to `index` among the queued ones (0 = next to run). */
  move(id: string, index: number): Job[] {
    const job = this.jobs.find((j) => j.id === id);
    if (!job || job.state !== 'queued') throw new AtelierError('BAD_REQUEST', 'Only a queued job can be moved.');
    const queued = this.jobs.filter((j) => j.state === 'queued' && j !== job);
    queued.splice(Math.min(index, queued.length), 0, job);
    const rest = this.jobs.filter((j) => j.state !== 'queued');
    this.jobs = [...rest, ...queued];
    this.opts.history.queueOrder(queued.map((j) => j.id));
    for (const j of queued) this.changed(j);
    return this.list();
  }

  retry(id: string): Job {
    const job = this.jobs.find((j) => j.id === id);
    if (!job) throw new AtelierError('NOT_FOUND', `No job ${id} in the queue.`);
    if (job.state !== 'failed' && job.state !== 'cancelled') throw new AtelierError('BAD_REQUEST', `The job is ${job.state}; only failed or cancelled jobs can be retried.`);
    return this.submit(job.params);
  }

  /** Refuse what cannot run before anything is queued. Returns the model. */
  private check(params: GenerateParams): { name: string } {
    const { blockedTerms } = this.opts.settings.get();
    const blocked = blockedTerms.length ? findBlockedTerms(`${params.prompt}\n${params.negativePrompt}`, blockedTerms) : [];
    if (blocked.length) throw new AtelierError('BLOCKED_TERMS', `The prompt contains terms blocked on this machine (${blocked.join(', ')}): remove them, or change the list in Settings.`);
    if (params.backend === 'cloud') return this.checkCloud(params);
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
    return model;
  }

  private checkCloud(params: GenerateParams): { name: string } {
    const m = cloudModel(params.modelId)!; // the contract checked it
    if (!this.opts.cloud) throw new AtelierError('BAD_REQUEST', 'The cloud backend is not available here.');
    if (params.mode === 'img2img' && !params.canvas) this.opts.history.getImage(params.initImageId!);
    if (params.canvas) {
      this.opts.history.requireFile(params.canvas.init);
      if (params.canvas.mask) this.opts.history.requireFile(params.canvas.mask);
    }
    this.opts.cloud.checkBudget(params);
    return { name: m.id };
  }

  async cancel(id: string): Promise<boolean> {
    const job = this.jobs.find((j) => j.id === id);
    if (!job) return false;
    if (job.state === 'queued') {
      this.finish(job, 'cancelled', { code: 'CANCELLED', message: 'Cancelled before it started.' });
      return true;
    }
    if (job.state === 'running') {
      const cloud = this.cloudAborts.get(id);
      if (cloud) {
        cloud.abort();
        return true;
      }
      return this.opts.runtime.cancel(id);
    }
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
    this.opts.history.queueRemove(job.id);
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
    // A cloud request does not use the worker: it need not wait for a training to pause.
    const release = this.opts.lock && next.params.backend !== 'cloud' ? await this.opts.lock.acquire('generation') : () => {};
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
    if (p.backend === 'cloud') return this.runCloud(job);
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
      // Hashes as A1111 writes them (cached per file), for the PNG metadata and the result cache.
      const modelHash = await this.opts.models.ensureHash(model.id);
      const loraHashes = await Promise.all(loras.map((l) => this.opts.models.ensureHash(l.model.id)));
      const controlHash = p.control ? await this.opts.models.ensureHash(p.control.modelId) : null;
      const key = cacheKey(p, { model: modelHash ?? `${model.path}`, loras: loraHashes, control: controlHash, init: init?.sha256 ?? null });
      if (!p.noCache) {
        const hit = this.opts.history.findCached(key);
        if (hit) {
          job.cached = true;
          job.generationId = hit.id;
          job.step = job.total;
          this.finish(job, 'done');
          return;
        }
      }
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
        modelHash,
        sampler: p.sampler,
        steps: p.steps,
        cfg: p.cfg,
        seed: p.seed,
        width: p.width,
        height: p.height,
        batch: p.batch,
        strength: p.mode === 'txt2img' ? null : p.strength,
        control: p.canvas || p.control ? { canvas: p.canvas ?? null, control: p.control ?? null } : null,
        loras: loras.map((l, i) => ({ name: l.model.name, hash: loraHashes[i], weight: l.weight, modelId: l.model.id })),
        cacheKey: key,
        queueId: job.id,
        device: result.device ? `${result.device}/${result.dtype}` : null,
        timings: result.timings,
        costUsd: null,
        // noCache decides whether to generate, not what: it is not part of the stored request (nor of the PNG's bytes)
        params: { ...p, noCache: undefined, family: result.family, memoryMode: result.memory_mode },
        images: result.images.map((img) => ({ sourcePath: img.path, seed: img.seed, parentImageId: init?.id ?? null })),
      });
      this.landed(job, gen.id);
    } catch (err) {
      this.failed(job, err);
    } finally {
      fs.rmSync(outDir, { recursive: true, force: true });
    }
  }

  /** The job's images are in the history. */
  private landed(job: Job, generationId: string): void {
    job.generationId = generationId;
    job.step = job.total;
    this.finish(job, 'done');
    this.opts.onAdded?.(generationId);
  }

  /** Cancelled or failed, with the error for the UI; unexpected errors are logged with their stack. */
  private failed(job: Job, err: unknown): void {
    const error = toErrorPayload(err);
    if (error.code === 'INTERNAL') this.opts.log?.(`job ${job.id}: ${(err as Error)?.stack ?? err}`);
    this.finish(job, error.code === 'CANCELLED' ? 'cancelled' : 'failed', error);
  }

  /** A cloud job: the request (with its retries), then the images into the history in one step. */
  private async runCloud(job: Job): Promise<void> {
    const p = job.params;
    const abort = new AbortController();
    this.cloudAborts.set(job.id, abort);
    try {
      const cloud = this.opts.cloud;
      if (!cloud) throw new AtelierError('BAD_REQUEST', 'The cloud backend is not available here.');
      const init = p.mode === 'img2img' && !p.canvas ? this.opts.history.getImage(p.initImageId!) : null;
      const inputs = {
        image: p.canvas ? fs.readFileSync(this.opts.history.requireFile(p.canvas.init)) : init ? fs.readFileSync(init.absPath) : undefined,
        mask: p.canvas?.mask ? fs.readFileSync(this.opts.history.requireFile(p.canvas.mask)) : undefined,
      };
      const result = await cloud.generate(p, inputs, {
        signal: abort.signal,
        onStatus: (note) => {
          job.note = note;
          this.changed(job);
        },
      });
      job.note = null;
      const [w, h] = result.size.split('x').map(Number);
      const gen = this.opts.history.addGeneration({
        backend: 'cloud',
        mode: p.mode,
        prompt: p.prompt,
        negativePrompt: '',
        modelId: null, // not a library model (the request in params names it)
        modelName: p.modelId,
        modelHash: null,
        sampler: '',
        steps: 0,
        cfg: 0,
        seed: 0,
        width: w || p.width,
        height: h || p.height,
        batch: result.images.length,
        strength: null,
        control: p.canvas ? { canvas: p.canvas, control: null } : null,
        loras: [],
        queueId: job.id,
        device: 'openai',
        timings: { ...result.timings, attempts: result.attempts },
        costUsd: result.costUsd,
        revisedPrompt: result.revisedPrompt,
        // what re-runs it: the same request, without the budget confirmation it was sent with
        params: { ...p, noCache: undefined, cloud: { ...p.cloud, overBudgetOk: undefined, resolvedSize: result.size, resolvedQuality: result.quality } },
        images: result.images.map((data) => ({ data, seed: 0, parentImageId: init?.id ?? null })),
      });
      this.landed(job, gen.id);
    } catch (err) {
      job.note = null;
      this.failed(job, err);
    } finally {
      this.cloudAborts.delete(job.id);
    }
  }
}
