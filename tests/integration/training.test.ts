/**
 * LoRA training end to end through the services with the real Python worker
 * and the built-in demo model: a dataset of a concept the model has never seen
 * (a pink heart), a training the worker is SIGKILLed in the middle of (it
 * resumes from its checkpoint by itself), and the LoRA used in a generation.
 */
import { spawnSync, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GenerateParams, TrainingConfig } from '../../src/shared/contract';
import { createServices, type Services } from '../../src/main/services';
import { python, ROOT } from './python';
import { memoryBackend } from '../../src/main/services/settings/settings';
import { readSafetensorsHeader } from '../../src/main/services/models/safetensors';
import { heartPng, tmpDir, waitFor } from '../helpers';



let services: Services;
const BACKGROUNDS: [number, number, number][] = [
  [40, 80, 220],
  [40, 170, 70],
  [240, 210, 40],
  [20, 20, 20],
  [240, 240, 240],
  [140, 60, 190],
];


beforeAll(() => {
  services = createServices({
    dataDir: tmpDir('atelier-train-'),
    appRoot: ROOT,
    settingsBackend: memoryBackend({ previewEvery: 0 }),
    shell: 'web',
    version: 'test',
    pythonOverride: python(),
    log: () => {},
    runtime: { pingIntervalMs: 1000, pingTimeoutMs: 20000 },
  });
});
afterAll(async () => services?.dispose());

describe('LoRA training with the real worker', () => {
  let loraId: string;
  let loraPath: string;
  const demo = () => services.models.list().find((m) => m.source === 'embedded' && m.kind === 'checkpoint')!;

  it('trains through a worker SIGKILL, resuming from the checkpoint, and the LoRA lands in the library', async () => {
    const ds = services.datasets.create('Hearts', 'atlrheart');
    const files = BACKGROUNDS.flatMap((bg, i) => [
      { name: `heart-${i}.png`, data: heartPng(bg, 26 + (i % 3) * 6, 28 + (i % 2) * 8, 14 + (i % 3) * 3).toString('base64') },
      { name: `heart-${i}.txt`, data: Buffer.from('a pink heart on a plain background').toString('base64') },
    ]);
    files.push({ name: 'broken.png', data: Buffer.from('this is not an image').toString('base64') });
    const imported = services.datasets.addFiles(ds.id, files);
    expect(imported.added).toHaveLength(6);
    expect(imported.skipped).toEqual([{ file: 'broken.png', reason: 'a text file, not an image' }]);

    const steps: number[] = [];
    let resumedFrom: number | null = null;
    let stepsAfterResume: number[] = [];
    const unsub = services.hub.subscribe((name, p) => {
      if (name === 'training.progress') (resumedFrom === null ? steps : stepsAfterResume).push((p as { step: number }).step);
      const m = name === 'training.changed' ? /Resuming from step (\d+)/.exec((p as { message: string }).message) : null;
      if (m && resumedFrom === null) {
        resumedFrom = Number(m[1]);
        stepsAfterResume = [];
      }
    });
    const job = services.training.start({
      name: 'hearts',
      datasetId: ds.id,
      modelId: demo().id,
      config: TrainingConfig.parse({ steps: 60, batch: 4, lr: 2e-3, rank: 8, alpha: 8, resolution: 64, checkpointEvery: 10, sampleEvery: 30, samplePrompts: ['atlrheart, a pink heart'] }),
    });
    await waitFor(() => services.training.get(job.id).checkpointStep >= 20 || ['failed', 'done'].includes(services.training.get(job.id).state), 240000);
    expect(services.training.get(job.id).state, services.training.get(job.id).message).toBe('running');
    const pid = services.runtime.workerPid!;
    const before = services.training.get(job.id);
    process.kill(pid, 'SIGKILL');
    await services.training.whenIdle();
    unsub();
    const done = services.training.get(job.id);
    expect(done.state, done.message).toBe('done');
    expect(services.runtime.status().restarts).toBeGreaterThanOrEqual(1);
    // The curve continues: one point per step, the points before the checkpoint kept as they were.
    expect(done.lossHistory.map(([s]) => s)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    const kept = before.lossHistory.filter(([s]) => s <= before.checkpointStep);
    expect(done.lossHistory.slice(0, kept.length)).toEqual(kept);
    // After the kill the training resumed from its checkpoint, not from step 1.
    expect(resumedFrom).not.toBeNull();
    expect(resumedFrom!).toBeGreaterThanOrEqual(before.checkpointStep);
    expect(stepsAfterResume[0]).toBe(resumedFrom! + 1);
    expect(stepsAfterResume[stepsAfterResume.length - 1]).toBe(60);
    // (That the loss falls and the LoRA learns the concept is measured in python-runtime/tests/test_training.py.)
    expect(done.lossHistory.every(([, l]) => Number.isFinite(l) && l > 0)).toBe(true);
    expect(done.samples.length).toBeGreaterThanOrEqual(1);
    for (const s of done.samples) expect(fs.existsSync(path.join(services.history.dir, ...s.path.split('/')))).toBe(true);
    expect(done.skipped).toEqual([]);

    const lora = services.models.get(done.outputModelId!);
    expect(lora).toMatchObject({ kind: 'lora', family: 'sd15', source: 'library' });
    const meta = readSafetensorsHeader(lora.path).metadata;
    expect(meta).toMatchObject({ 'atelier.trigger': 'atlrheart', ss_network_dim: '8', ss_network_alpha: '8', 'atelier.steps': '60' });
    loraId = lora.id;
    loraPath = lora.path;
  }, 600000);

  it('a generation with the LoRA differs from one without, and the history records it', async () => {
    const base = { prompt: 'atlrheart, a pink heart', modelId: demo().id, seed: 3, steps: 12, width: 64, height: 64, sampler: 'Euler' as const };
    const a = services.jobs.submit(GenerateParams.parse(base));
    const b = services.jobs.submit(GenerateParams.parse({ ...base, loras: [{ modelId: loraId, weight: 1 }] }));
    await services.jobs.whenIdle();
    const [ja, jb] = [a, b].map((j) => services.jobs.list().find((x) => x.id === j.id)!);
    expect(ja.state).toBe('done');
    expect(jb.state, jb.error?.message).toBe('done');
    const ga = services.history.get(ja.generationId!);
    const gb = services.history.get(jb.generationId!);
    expect(gb.loras).toEqual([{ name: 'hearts', hash: expect.stringMatching(/^[0-9a-f]{12}$/), weight: 1, modelId: loraId }]);
    expect(ga.loras).toEqual([]);
    expect(gb.images[0].sha256).not.toBe(ga.images[0].sha256);
  }, 300000);

  it('the CLI takes --lora PATH:WEIGHT', () => {
    if (!fs.existsSync(path.join(ROOT, 'dist/main/cli.cjs'))) execFileSync(process.execPath, ['scripts/build-main.mjs', '--quiet'], { cwd: ROOT });
    const run = (extra: string[]) =>
      spawnSync(
        process.execPath,
        ['dist/main/cli.cjs', 'generate', '--prompt', 'atlrheart, a pink heart', '--model', path.join(ROOT, 'resources', 'models', 'atelier-shapes'), '--seed', '3', '--steps', '8', '--sampler', 'Euler', '--quiet', ...extra],
        { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ATELIER_DATA_DIR: tmpDir('atelier-cli-'), ATELIER_PYTHON: python() } },
      );
    const plain = run([]);
    const withLora = run(['--lora', `${loraPath}:0.8`]);
    expect(plain.status, plain.stderr).toBe(0);
    expect(withLora.status, withLora.stderr).toBe(0);
    const sha = (r: typeof plain) => fs.readFileSync(JSON.parse(r.stdout.trim().split('\n')[0]).path).toString('base64');
    expect(sha(withLora)).not.toBe(sha(plain));
    const bad = run(['--lora', path.join(ROOT, 'resources', 'models', 'atelier-shapes-canny', 'diffusion_pytorch_model.safetensors')]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/not a LoRA/);
  }, 300000);
});
