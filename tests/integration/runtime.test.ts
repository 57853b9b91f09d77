/**
 * The services with the real Python worker and real diffusers, on a tiny
 * random-weight SD pipeline the runtime's test helper builds: jobs land in the
 * history, seeds reproduce, cancel and crashes behave, the CLI works.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { HistoryStore } from '../../src/main/services/history/store';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GenerateParamsInput, Job } from '../../src/shared/contract';
import { GenerateParams } from '../../src/shared/contract';
import { createServices, type Services } from '../../src/main/services';
import { python, ROOT, RUNTIME } from './python';
import { memoryBackend } from '../../src/main/services/settings/settings';
import { tmpDir, waitFor } from '../helpers';



let services: Services;
let modelsDir: string;
let modelId: string;

function start(): Services {
  return createServices({
    dataDir: tmpDir('atelier-int-'),
    appRoot: ROOT,
    settingsBackend: memoryBackend({ modelDirs: [modelsDir], previewEvery: 2 }),
    shell: 'web',
    version: 'test',
    pythonOverride: python(),
    log: () => {},
    runtime: { pingIntervalMs: 500, pingTimeoutMs: 3000 },
  });
}

function params(p: Partial<GenerateParamsInput> = {}) {
  return GenerateParams.parse({ prompt: 'a red circle on a white background', modelId, seed: 7, steps: 4, width: 64, height: 64, sampler: 'Euler', ...p });
}

async function run(p: Partial<GenerateParamsInput> = {}): Promise<Job> {
  const job = services.jobs.submit(params(p));
  await services.jobs.whenIdle();
  return services.jobs.list().find((j) => j.id === job.id)!;
}


beforeAll(async () => {
  modelsDir = tmpDir('atelier-models-');
  execFileSync(python(), ['-m', 'atelier_runtime.testing.tiny', modelsDir], { cwd: RUNTIME, env: { ...process.env, PYTHONPATH: RUNTIME }, stdio: ['ignore', 'ignore', 'inherit'] });
  services = start();
  const model = services.models.list().find((m) => m.kind === 'checkpoint' && m.format === 'diffusers' && m.source !== 'embedded');
  if (!model) throw new Error(`no tiny model found in ${modelsDir}`);
  modelId = model.id;
  await services.runtime.ensureStarted();
});

afterAll(async () => {
  await services?.dispose();
});

describe('runtime supervisor with the real worker', () => {
  it('reports the device and versions the worker said hello with', () => {
    const s = services.runtime.status();
    expect(s.state).toBe('ready');
    expect(s.devices[0].kind).toBe('cpu');
    expect(s.versions.torch).toMatch(/^\d+\.\d+/);
    expect(s.versions.diffusers).toMatch(/^\d+\.\d+/);
  });

  it('generates into the history with every parameter, and the same seed gives the same pixels', async () => {
    const progress: number[] = [];
    const off = services.hub.subscribe((name, p) => name === 'jobs.progress' && progress.push((p as { step: number }).step));
    const a = await run({ seed: 7, negativePrompt: 'blurry' });
    off();
    expect(a.state, JSON.stringify(a.error)).toBe('done');
    expect(progress).toEqual([1, 2, 3, 4]);
    const g = services.history.get(a.generationId!);
    expect(g).toMatchObject({ prompt: 'a red circle on a white background', negativePrompt: 'blurry', sampler: 'Euler', steps: 4, seed: 7, width: 64, height: 64, backend: 'local', modelId });
    expect(g.device).toMatch(/^cpu\//);
    expect(g.timings.total_ms).toBeGreaterThan(0);
    expect(g.images[0]).toMatchObject({ width: 64, height: 64, seed: 7 });
    expect(fs.existsSync(path.join(services.history.dir, g.images[0].path))).toBe(true);

    // The same request again is answered from the history at once (the result cache)…
    const cached = await run({ seed: 7, negativePrompt: 'blurry' });
    expect(cached).toMatchObject({ state: 'done', cached: true, generationId: g.id });
    // …and generating it anyway gives the same pixels (and bytes: the metadata is deterministic).
    const fresh = await run({ seed: 7, negativePrompt: 'blurry', noCache: true });
    expect(fresh.cached).toBe(false);
    const again = services.history.get(fresh.generationId!);
    expect(again.id).not.toBe(g.id);
    expect(again.images[0].sha256).toBe(g.images[0].sha256);
    expect(again.modelHash).toMatch(/^[0-9a-f]{10}$/);
    const other = services.history.get((await run({ seed: 8, negativePrompt: 'blurry' })).generationId!);
    expect(other.images[0].sha256).not.toBe(g.images[0].sha256);
  });

  it('a batch uses seed+i, so each image is reproducible alone', async () => {
    const batch = services.history.get((await run({ seed: 100, batch: 2 })).generationId!);
    expect(batch.images.map((i) => i.seed)).toEqual([100, 101]);
    const single = services.history.get((await run({ seed: 101 })).generationId!);
    expect(single.images[0].sha256).toBe(batch.images[1].sha256);
  });

  it('img2img records its parent image and strength', async () => {
    const base = services.history.get((await run({ seed: 3 })).generationId!);
    const job = await run({ mode: 'img2img', initImageId: base.images[0].id, strength: 0.5, steps: 6 });
    expect(job.state, JSON.stringify(job.error)).toBe('done');
    const g = services.history.get(job.generationId!);
    expect(g.mode).toBe('img2img');
    expect(g.strength).toBe(0.5);
    expect(g.images[0].parentImageId).toBe(base.images[0].id);
  });

  it('cancel stops a running job within a few steps and saves nothing', async () => {
    const before = services.history.list().total;
    const steps: number[] = [];
    const off = services.hub.subscribe((name, p) => name === 'jobs.progress' && steps.push((p as { step: number }).step));
    const job = services.jobs.submit(params({ steps: 200, width: 128, height: 128 }));
    await waitFor(() => steps.length >= 2);
    const at = steps[steps.length - 1];
    expect(await services.jobs.cancel(job.id)).toBe(true);
    await services.jobs.whenIdle();
    off();
    const done = services.jobs.list().find((j) => j.id === job.id)!;
    expect(done.state).toBe('cancelled');
    expect(done.error?.code).toBe('CANCELLED');
    expect(Math.max(...steps) - at).toBeLessThanOrEqual(3);
    expect(services.history.list().total).toBe(before);
  });

  it('a worker killed mid-job fails that job clearly, restarts, and the next job succeeds', async () => {
    const steps: number[] = [];
    const off = services.hub.subscribe((name, p) => name === 'jobs.progress' && steps.push((p as { step: number }).step));
    const doomed = services.jobs.submit(params({ steps: 200, width: 128, height: 128 }));
    const next = services.jobs.submit(params({ seed: 7 }));
    await waitFor(() => steps.length >= 1);
    process.kill(services.runtime.workerPid!, 'SIGKILL');
    await services.jobs.whenIdle();
    off();
    const jobs = services.jobs.list();
    const failed = jobs.find((j) => j.id === doomed.id)!;
    expect(failed.state).toBe('failed');
    expect(failed.error?.code).toBe('RUNTIME_CRASHED');
    expect(failed.error?.message).toMatch(/Python worker stopped: it was killed \(SIGKILL\)/);
    expect(jobs.find((j) => j.id === next.id)!.state).toBe('done');
    expect(services.runtime.status().restarts).toBeGreaterThanOrEqual(1);
  });

  it('a hung worker is detected by its missed pings, killed and replaced', async () => {
    const steps: number[] = [];
    const off = services.hub.subscribe((name, p) => name === 'jobs.progress' && steps.push((p as { step: number }).step));
    const job = services.jobs.submit(params({ steps: 200, width: 128, height: 128 }));
    await waitFor(() => steps.length >= 1);
    process.kill(services.runtime.workerPid!, 'SIGSTOP');
    await services.jobs.whenIdle();
    off();
    const done = services.jobs.list().find((j) => j.id === job.id)!;
    expect(done.state).toBe('failed');
    expect(done.error?.message).toMatch(/stopped responding/);
    expect((await run({ seed: 9, noCache: true })).state).toBe('done');
  });
});

describe('killing the app mid-batch', () => {
  it('SIGKILL while a queue of batches runs: integrity ok, every finished image has its row and file, nothing half-written, the rest still queued', async () => {
    const dataDir = tmpDir('atelier-kill-');
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'app-batch.fixture.ts'), dataDir, modelsDir, python(), '12'], { stdio: ['ignore', 'pipe', 'inherit'] });
    const done: string[] = [];
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error('the app never finished 3 generations')), 240000);
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const l of lines) if (l.startsWith('done ')) done.push(l.slice(5));
        if (done.length >= 3) {
          clearTimeout(timer);
          // Kill while the next batch is being generated and written.
          setTimeout(() => {
            child.kill('SIGKILL');
            resolve();
          }, 150);
        }
      });
    });
    await new Promise((r) => child.once('exit', r));
    // Whatever the kill left, on disk as a restart finds it:
    const db = new Database(path.join(dataDir, 'atelier.db'), { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    const rows = db.prepare('SELECT generation_id, path FROM images').all() as { generation_id: string; path: string }[];
    const gens = new Set(rows.map((r) => r.generation_id));
    for (const id of done) expect(gens.has(id), id).toBe(true);
    for (const r of rows) expect(fs.existsSync(path.join(dataDir, r.path)), r.path).toBe(true);
    expect(rows.length).toBe(gens.size * 2); // batches land whole
    const queued = (db.prepare('SELECT COUNT(*) AS n FROM queue').get() as { n: number }).n;
    db.close();
    // Files without rows can only be temp files of the interrupted write; the next start sweeps them.
    const files: string[] = [];
    const walk = (d: string) => fs.existsSync(d) && fs.readdirSync(d, { withFileTypes: true }).forEach((e) => (e.isDirectory() ? walk(path.join(d, e.name)) : files.push(path.relative(dataDir, path.join(d, e.name)).split(path.sep).join('/'))));
    walk(path.join(dataDir, 'images'));
    const known = new Set(rows.map((r) => r.path));
    for (const f of files) expect(known.has(f) || f.includes('.tmp-'), f).toBe(true);
    const store = new HistoryStore({ dir: dataDir });
    store.sweepOrphans();
    expect(store.list({ limit: 100 }).total).toBe(gens.size);
    // The jobs that had not finished are still queued for the next start.
    expect(queued).toBe(12 - gens.size);
    expect(store.queueList().length).toBe(12 - gens.size);
    store.close();
    console.log(`app kill drill: ${done.length} generations reported before the kill, ${gens.size} committed, ${queued} still queued, ${files.length} image files, integrity ok`);
  }, 300000);
});

describe('CLI', () => {
  it('generates through the same services and prints one JSON line per image', () => {
    if (!fs.existsSync(path.join(ROOT, 'dist/main/cli.cjs'))) execFileSync(process.execPath, ['scripts/build-main.mjs', '--quiet'], { cwd: ROOT });
    const out = tmpDir('atelier-cli-out-');
    const r = spawnSync(
      process.execPath,
      ['dist/main/cli.cjs', 'generate', '--prompt', 'a blue square', '--model', path.join(modelsDir, 'tiny-sd15'), '--seed', '5', '--steps', '3', '--width', '64', '--height', '64', '--batch', '2', '--out', out, '--quiet'],
      { cwd: ROOT, encoding: 'utf8', env: { ...process.env, ATELIER_DATA_DIR: tmpDir('atelier-cli-'), ATELIER_PYTHON: python() } },
    );
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((l) => l.seed)).toEqual([5, 6]);
    for (const l of lines) {
      expect(l.generationId).toMatch(/^[0-9a-f-]{36}$/);
      expect(fs.readFileSync(l.path).subarray(1, 4).toString()).toBe('PNG');
      expect(path.dirname(l.path)).toBe(out);
    }
  });

  it('refuses a pickle given as a model with a message that says why', () => {
    const dir = tmpDir();
    const ckpt = path.join(dir, 'model.ckpt');
    fs.writeFileSync(ckpt, Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.alloc(64)]));
    const r = spawnSync(process.execPath, ['dist/main/cli.cjs', 'generate', '--prompt', 'x', '--model', ckpt, '--quiet'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, ATELIER_DATA_DIR: tmpDir(), ATELIER_PYTHON: python() },
    });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/NOT_A_MODEL: model\.ckpt is a Python pickle/);
  });
});
