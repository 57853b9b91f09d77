/**
 * The training job state machine on a real SQLite file, with a scripted worker
 * standing in for Python (the real worker's training is covered by
 * tests/integration/training.test.ts and python-runtime/tests/test_training.py).
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { TrainingConfig, type TrainingJob } from '../../src/shared/contract';
import { AtelierError } from '../../src/shared/errors';
import { trainingPreset } from '../../src/shared/training';
import { HistoryStore } from '../../src/main/services/history/store';
import { ModelsService } from '../../src/main/services/models/models';
import { WorkerLock } from '../../src/main/services/runtime/lock';
import type { RuntimeService } from '../../src/main/services/runtime/runtime';
import { DatasetsService } from '../../src/main/services/training/datasets';
import { TrainingStore } from '../../src/main/services/training/store';
import { TrainingService } from '../../src/main/services/training/training';
import { makePng, tmpDir, writeSafetensors } from '../helpers';

type Ev = Record<string, unknown>;

/** A worker that trains `total` steps, checkpointing every `every`, and honours cancel like the real one. */
class ScriptedRuntime {
  cancelled = new Set<string>();
  crashAt: number | null = null;
  requests: Record<string, unknown>[] = [];
  checkpoint = new Map<string, number>();
  async ensureStarted() {
    return {};
  }
  status() {
    return { devices: [{ kind: 'cuda', name: 'RTX', vramMb: 12282 }] } as unknown as ReturnType<RuntimeService['status']>;
  }
  async cancel(id: string) {
    this.cancelled.add(id);
    return true;
  }
  async train(id: string, req: Record<string, unknown>, onEvent: (e: Ev) => void) {
    this.requests.push(req);
    const total = Number(req.steps);
    const every = Number(req.checkpoint_every);
    const from = this.checkpoint.get(id) ?? 0;
    onEvent({ type: 'train_status', phase: 'caching', message: 'Caching latents', images: 2, skipped: [{ file: 'bad.png', reason: 'corrupt' }] });
    const loss: [number, number][] = [];
    for (let s = 1; s <= from; s++) loss.push([s, 1 / s]);
    for (let step = from + 1; step <= total; step++) {
      await new Promise((r) => setTimeout(r, 2));
      if (this.crashAt === step) {
        this.crashAt = null;
        throw new AtelierError('RUNTIME_CRASHED', 'The Python worker died (SIGKILL).');
      }
      if (this.cancelled.has(id)) {
        this.cancelled.delete(id);
        this.checkpoint.set(id, step - 1);
        onEvent({ type: 'train_checkpoint', step: step - 1, path: '/x' });
        throw new AtelierError('CANCELLED', 'Cancelled.');
      }
      loss.push([step, 1 / step]);
      onEvent({ type: 'train_progress', step, total, loss: 1 / step, loss_avg: 1 / step, lr: 1e-4, it_s: 10, eta_s: (total - step) / 10 });
      if (every && step % every === 0) {
        this.checkpoint.set(id, step);
        onEvent({ type: 'train_checkpoint', step, path: '/x' });
      }
    }
    fs.mkdirSync(path.dirname(String(req.output)), { recursive: true });
    writeSafetensors(String(req.output), ['lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight']);
    return { output: req.output, steps: total, resumed_from: from, loss, final_loss: 1 / total, skipped: [], images: 2, seconds: 1 };
  }
}

const open: { history: HistoryStore }[] = [];
afterEach(() => open.splice(0).forEach((o) => o.history.close()));

function setup(lib = tmpDir()) {
  const history = new HistoryStore({ dir: lib });
  open.push({ history });
  const modelsDir = path.join(lib, 'base');
  fs.mkdirSync(modelsDir, { recursive: true });
  writeSafetensors(path.join(modelsDir, 'base.safetensors'), ['model.diffusion_model.input_blocks.0.0.weight']);
  const models = new ModelsService(history, () => [
    { dir: modelsDir, source: 'folder' },
    { dir: path.join(lib, 'models'), source: 'library' },
  ]);
  models.rescan();
  const datasets = new DatasetsService(path.join(lib, 'datasets'), lib);
  const runtime = new ScriptedRuntime();
  const events: TrainingJob[] = [];
  const make = () =>
    new TrainingService({
      store: new TrainingStore(history.database),
      datasets,
      models,
      runtime: runtime as unknown as RuntimeService,
      lock: new WorkerLock(),
      libraryDir: lib,
      lorasDir: path.join(lib, 'models', 'loras'),
      onChanged: (j) => events.push(j),
    });
  const ds = datasets.create('Brand', 'atlr');
  datasets.addFiles(ds.id, [{ name: 'a.png', data: makePng(64, 64).toString('base64') }]);
  const base = models.list().find((m) => m.kind === 'checkpoint')!;
  return { lib, history, models, datasets, runtime, events, make, ds, base };
}

const until = async (cond: () => boolean, ms = 5000) => {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe('training jobs', () => {
  it('runs to done, stores the loss curve, and puts the LoRA in the library', async () => {
    const { make, ds, base, models } = setup();
    const svc = make();
    const job = svc.start({ name: 'brand', datasetId: ds.id, modelId: base.id, config: TrainingConfig.parse({ steps: 30, checkpointEvery: 10, sampleEvery: 10 }) });
    expect(job.state).toBe('queued');
    await svc.whenIdle();
    const done = svc.get(job.id);
    expect(done.state).toBe('done');
    expect(done.lossHistory).toHaveLength(30);
    expect(done.lossHistory[29]).toEqual([30, 1 / 30]);
    expect(done.skipped).toEqual([]);
    const lora = models.get(done.outputModelId!);
    expect(lora).toMatchObject({ kind: 'lora', name: 'brand', source: 'library' });
    // The default sample prompt is the trigger word.
    expect(done.config.samplePrompts).toEqual(['atlr']);
  });

  it('pause writes a checkpoint and resume continues from it, the loss curve continuing', async () => {
    const { make, ds, base, runtime } = setup();
    const svc = make();
    const job = svc.start({ name: 'p', datasetId: ds.id, modelId: base.id, config: TrainingConfig.parse({ steps: 200, checkpointEvery: 50 }) });
    await until(() => (svc.list()[0]?.step ?? 0) >= 60);
    await svc.pause(job.id);
    await svc.whenIdle();
    const paused = svc.get(job.id);
    expect(paused.state).toBe('paused');
    expect(paused.checkpointStep).toBeGreaterThanOrEqual(60);
    expect(paused.step).toBe(paused.checkpointStep);
    expect(paused.lossHistory.length).toBe(paused.checkpointStep);
    svc.resume(job.id);
    await until(() => svc.list()[0].state === 'done');
    const done = svc.get(job.id);
    expect(done.lossHistory.map(([s]) => s)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    expect(runtime.requests).toHaveLength(2);
  });

  it('a worker crash resumes from the last checkpoint by itself', async () => {
    const { make, ds, base, runtime } = setup();
    runtime.crashAt = 37;
    const svc = make();
    const job = svc.start({ name: 'c', datasetId: ds.id, modelId: base.id, config: TrainingConfig.parse({ steps: 50, checkpointEvery: 10 }) });
    await until(() => svc.list()[0].state === 'done');
    const done = svc.get(job.id);
    expect(runtime.requests).toHaveLength(2);
    expect(done.lossHistory).toHaveLength(50);
  });

  it('a job running when the app was killed comes back interrupted, at its checkpoint', async () => {
    const lib = tmpDir();
    const first = setup(lib);
    const svc = first.make();
    const job = svc.start({ name: 'k', datasetId: first.ds.id, modelId: first.base.id, config: TrainingConfig.parse({ steps: 5000, checkpointEvery: 25 }) });
    await until(() => svc.get(job.id).checkpointStep >= 50);
    // "Kill": the SQLite file is what survives. Reopen it as a new app would.
    const db2 = new HistoryStore({ dir: lib });
    open.push({ history: db2 });
    const models2 = new ModelsService(db2, () => []);
    const svc2 = new TrainingService({
      store: new TrainingStore(db2.database),
      datasets: new DatasetsService(path.join(lib, 'datasets'), lib),
      models: models2,
      runtime: new ScriptedRuntime() as unknown as RuntimeService,
      lock: new WorkerLock(),
      libraryDir: lib,
      lorasDir: path.join(lib, 'models', 'loras'),
    });
    const back = svc2.get(job.id);
    expect(back.state).toBe('interrupted');
    expect(back.step).toBe(back.checkpointStep);
    expect(back.lossHistory.every(([s]) => s <= back.checkpointStep)).toBe(true);
    expect(back.message).toMatch(/Resume continues from the checkpoint at step/);
    await svc.cancel(job.id);
    await svc.whenIdle();
  });

  it('generations wait for the worker while a training holds it', async () => {
    const lock = new WorkerLock();
    const order: string[] = [];
    const releaseTraining = await lock.acquire('training:x');
    const gen = lock.acquire('generation').then((r) => {
      order.push('generation');
      r();
    });
    await new Promise((r) => setTimeout(r, 20));
    expect(lock.heldBy).toBe('training:x');
    order.push('training done');
    releaseTraining();
    await gen;
    expect(order).toEqual(['training done', 'generation']);
    expect(lock.heldBy).toBeNull();
  });

  it('refuses what cannot be trained, saying why', async () => {
    const { make, ds, base, datasets } = setup();
    const svc = make();
    const empty = datasets.create('Empty');
    expect(() => svc.start({ name: 'x', datasetId: empty.id, modelId: base.id, config: TrainingConfig.parse({}) })).toThrow(/has no images yet/);
    expect(() => svc.start({ name: 'x', datasetId: ds.id, modelId: 'nope', config: TrainingConfig.parse({}) })).toThrow(/not in the library/);
    expect(() => svc.resume(svc.start({ name: 'y', datasetId: ds.id, modelId: base.id, config: TrainingConfig.parse({ steps: 3 }) }).id)).toThrow(/only a paused/);
    await svc.whenIdle();
  });
});

describe('training presets', () => {
  it('follow the device and family', () => {
    expect(trainingPreset('sd15', { kind: 'cuda', vramMb: 8192 - 300 }, 512)).toMatchObject({ tier: '8gb', config: { gradientCheckpointing: true, batch: 1 } });
    expect(trainingPreset('sdxl', { kind: 'cuda', vramMb: 12282 }, 1024)).toMatchObject({ tier: '12gb', config: { optimizer: 'adamw8bit', resolution: 1024 } });
    expect(trainingPreset('sdxl', { kind: 'cuda', vramMb: 24564 }, 1024).tier).toBe('24gb');
    expect(trainingPreset('sd15', { kind: 'cpu', vramMb: 0 }, 64)).toMatchObject({ tier: 'cpu', config: { resolution: 64, batch: 4 } });
    expect(trainingPreset('sd15', null, null).config.resolution).toBe(512);
  });
});
