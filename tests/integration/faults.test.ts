/**
 * The faults suite: every fault the issue lists, injected for real into the app's services with the
 * real Python worker (tiny random-weight models), each followed by the same checker:
 *
 *   - PRAGMA integrity_check is 'ok' on the library database;
 *   - every image row has its file, every generation has its images, every image file has a row
 *     (no orphans), and no temp file of an interrupted write is left (no half images);
 *   - every item the app had reported finished before the fault is still there;
 *   - one normal job submitted afterwards succeeds.
 *
 * Each fault also asserts what the UI is shown (the job's state and error, the runtime's status and
 * message, the training job's state and message) and, for training, that it resumes from its last
 * checkpoint (the step count continues). The end prints the figures: faults injected, survived,
 * items lost (must be 0), with one row per fault.
 *
 * Run alone: `ATELIER_TRAIN_THREADS=1 nice -n 10 npx vitest run tests/integration/faults.test.ts`.
 * The full-disk fault mounts a small tmpfs over the library's image folder (root with mount rights);
 * where mounting is refused it makes the image write hit /dev/full (a real ENOSPC) instead, and says
 * which way it ran. ATELIER_FAULTS_NO_MOUNT=1 forces the second way.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { GenerateParams, TrainingConfig, type GenerateParamsInput, type Job, type JobProgress, type RuntimeStatus, type TrainingJob, type TrainingProgress } from '../../src/shared/contract';
import { createServices, type Services, type ServicesOptions } from '../../src/main/services';
import { envKeyStore } from '../../src/main/services/cloud/keystore';
import { lockHash, venvDir, venvPython } from '../../src/main/services/runtime/provision';
import { python, ROOT, RUNTIME } from './python';
import { memoryBackend } from '../../src/main/services/settings/settings';
import { TEMP_MARK } from '../../src/main/lib/fsx';
import { FakeOpenAI } from '../fake-openai';
import { addHeartDataset, tmpDir, waitFor } from '../helpers';

const KEY = 'sk-test-Atelier-faults-0123456789abcdef';
/** One intra-op thread in every worker: the machine's cores are shared (see embedded/common.py). */
const WORKER_ENV = { OMP_NUM_THREADS: '1', ATELIER_TRAIN_THREADS: process.env.ATELIER_TRAIN_THREADS || '1' };
/** The smallest training that still checkpoints a few times before it ends. */
const TRAIN = { steps: 10, batch: 1, lr: 1e-4, rank: 4, alpha: 4, resolution: 64, checkpointEvery: 3, sampleEvery: 0 };


// ------------------------------------------------------------------ figures

interface FaultRow {
  fault: string;
  how: string;
  injected: boolean;
  survived: boolean;
  /** Items the app had finished that the fault lost, plus rows left without their file. */
  lost: number;
  /** What the UI was shown about it. */
  shown: string;
}
const table: FaultRow[] = [];
function fault(name: string, how: string): FaultRow {
  const row: FaultRow = { fault: name, how, injected: false, survived: false, lost: 0, shown: '' };
  table.push(row);
  return row;
}

// ------------------------------------------------------------------ services

const fake = new FakeOpenAI();
let modelsDir: string;
/** The main services' interpreter: a wrapper script in a temp dir (the chosen-interpreter fault deletes it). */
let mainPython: string;
let nextSeed = 5000;
const cleanups: (() => void | Promise<void>)[] = [];

interface Started {
  services: Services;
  logs: string[];
  /** Called with every log line (the mid-load fault kills the worker from here). */
  onLog: { fn: ((line: string) => void) | null };
  runtimeEvents: RuntimeStatus[];
  jobEvents: Job[];
  trainingEvents: TrainingJob[];
}

function start(dataDir: string, extra: Partial<ServicesOptions> = {}): Started {
  const logs: string[] = [];
  const onLog: Started['onLog'] = { fn: null };
  const services = createServices({
    dataDir,
    appRoot: ROOT,
    settingsBackend: memoryBackend({ modelDirs: [modelsDir], previewEvery: 0 }),
    shell: 'web',
    version: 'test',
    pythonOverride: mainPython,
    log: (line) => {
      logs.push(line);
      onLog.fn?.(line);
    },
    keyStore: envKeyStore({ OPENAI_API_KEY: KEY }),
    openaiBaseURL: fake.url,
    cloud: { timeoutMs: 1500, maxWaitMs: 5000 },
    runtime: { pingIntervalMs: 1000, pingTimeoutMs: 30000, env: WORKER_ENV },
    ...extra,
  });
  const s: Started = { services, logs, onLog, runtimeEvents: [], jobEvents: [], trainingEvents: [] };
  services.hub.subscribe((name, payload) => {
    if (name === 'runtime.changed') s.runtimeEvents.push(payload as RuntimeStatus);
    if (name === 'jobs.changed') s.jobEvents.push(payload as Job);
    if (name === 'training.changed') s.trainingEvents.push(payload as TrainingJob);
  });
  return s;
}

/** Dispose these services at the end of the test (or, if it fails, in afterAll). */
function owned(st: Started): () => Promise<void> {
  let done: Promise<void> | null = null;
  const stop = () => (done ??= st.services.dispose());
  cleanups.push(stop);
  return stop;
}

/** The tiny model's id in this library (each library has its own model rows). */
function tinyIn(s: Services): string {
  const m = s.models.list().find((x) => x.kind === 'checkpoint' && x.format === 'diffusers' && x.name === 'tiny-sd15');
  if (!m) throw new Error(`no tiny model found in ${modelsDir}`);
  return m.id;
}

/** A small txt2img request on the tiny model, a new seed each time, never answered from the cache. */
function params(s: Services, p: Partial<GenerateParamsInput> = {}): GenerateParams {
  return GenerateParams.parse({ prompt: 'a red circle on a white background', modelId: tinyIn(s), seed: nextSeed++, steps: 3, width: 64, height: 64, sampler: 'Euler', noCache: true, ...p });
}

const cloudParams = (prompt: string) => GenerateParams.parse({ backend: 'cloud', modelId: 'gpt-image-1', prompt, seed: 0, cloud: { size: '1024x1024' } });

function jobOf(s: Services, id: string): Job {
  const j = s.jobs.list().find((x) => x.id === id);
  if (!j) throw new Error(`job ${id} is not in the list`);
  return j;
}

async function runJob(s: Services, p: GenerateParams): Promise<Job> {
  const job = s.jobs.submit(p);
  await s.jobs.whenIdle();
  return jobOf(s, job.id);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Direct children of a process (Linux /proc), e.g. the worker of an app fixture. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${e}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

/** A stand-in interpreter: a shell script that execs the real one (so its pid is the worker's). */
function writeWrapper(file: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, `#!/bin/sh\nexec "${python()}" "$@"\n`, { mode: 0o755 });
}

function isMount(dir: string): boolean {
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[1] === dir);
}

// ------------------------------------------------------------------ the checker

interface LibraryState {
  integrity: string;
  rows: string[];
  rowsWithoutFile: string[];
  generationsWithoutImages: number;
  orphans: string[];
  halfFiles: string[];
}

function filesUnder(root: string, rel: string): string[] {
  const out: string[] = [];
  const walk = (abs: string, r: string) => {
    if (!fs.existsSync(abs)) return;
    for (const e of fs.readdirSync(abs, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(abs, e.name), `${r}/${e.name}`);
      else out.push(`${r}/${e.name}`);
    }
  };
  walk(path.join(root, rel), rel);
  return out;
}

/** The library as a restart would find it, read through its own connection. */
function inspect(dataDir: string): LibraryState {
  const db = new Database(path.join(dataDir, 'atelier.db'), { readonly: true, fileMustExist: true });
  let integrity: string;
  let rows: string[];
  let generationsWithoutImages: number;
  try {
    integrity = String(db.pragma('integrity_check', { simple: true }));
    rows = (db.prepare('SELECT path FROM images').all() as { path: string }[]).map((r) => r.path);
    generationsWithoutImages = (db.prepare('SELECT COUNT(*) AS n FROM generations g WHERE NOT EXISTS (SELECT 1 FROM images i WHERE i.generation_id = g.id)').get() as { n: number }).n;
  } finally {
    db.close();
  }
  const known = new Set(rows);
  const files = filesUnder(dataDir, 'images');
  return {
    integrity,
    rows,
    rowsWithoutFile: rows.filter((r) => !fs.existsSync(path.join(dataDir, ...r.split('/')))),
    generationsWithoutImages,
    halfFiles: files.filter((f) => f.includes(TEMP_MARK)),
    orphans: files.filter((f) => !f.includes(TEMP_MARK) && !known.has(f)),
  };
}

/** Generations the app reported finished that are not whole in the library (row and every file). */
function missingGenerations(dataDir: string, ids: string[]): string[] {
  if (!ids.length) return [];
  const db = new Database(path.join(dataDir, 'atelier.db'), { readonly: true, fileMustExist: true });
  try {
    return ids.filter((id) => {
      const imgs = db.prepare('SELECT path FROM images WHERE generation_id = ?').all(id) as { path: string }[];
      return imgs.length === 0 || imgs.some((r) => !fs.existsSync(path.join(dataDir, ...r.path.split('/'))));
    });
  } finally {
    db.close();
  }
}

/** The shared checker, run after every fault (see the file's comment). */
async function check(s: Services, row: FaultRow, finished: string[] = []): Promise<void> {
  const dir = s.history.dir;
  const st = inspect(dir);
  const missing = missingGenerations(dir, finished);
  row.lost += missing.length + st.rowsWithoutFile.length + st.generationsWithoutImages;
  expect(st.integrity).toBe('ok');
  expect(missing, 'finished before the fault, missing after it').toEqual([]);
  expect(st.rowsWithoutFile, 'rows without their file').toEqual([]);
  expect(st.generationsWithoutImages, 'generations without images').toBe(0);
  expect(st.halfFiles, 'temp files of an interrupted write').toEqual([]);
  expect(st.orphans, 'image files without a row').toEqual([]);

  const next = await runJob(s, params(s));
  expect(next.state, `the next job: ${JSON.stringify(next.error)}`).toBe('done');
  const g = s.history.get(next.generationId!);
  for (const im of g.images) expect(fs.existsSync(path.join(dir, ...im.path.split('/'))), im.path).toBe(true);
  const after = inspect(dir);
  expect(after.integrity).toBe('ok');
  expect([...after.rowsWithoutFile, ...after.halfFiles, ...after.orphans]).toEqual([]);
}

// ------------------------------------------------------------------ the suite

let main: Started;

beforeAll(async () => {
  modelsDir = tmpDir('atelier-faults-models-');
  execFileSync(python(), ['-m', 'atelier_runtime.testing.tiny', modelsDir], { cwd: RUNTIME, env: { ...process.env, PYTHONPATH: RUNTIME }, stdio: ['ignore', 'ignore', 'inherit'] });
  await fake.start();
  mainPython = path.join(tmpDir('atelier-faults-py-'), 'bin', 'python');
  writeWrapper(mainPython);
  main = start(tmpDir('atelier-faults-'));
  await main.services.runtime.ensureStarted();
  // A library with something in it before the first fault.
  const first = await runJob(main.services, params(main.services));
  expect(first.state, JSON.stringify(first.error)).toBe('done');
});

afterAll(async () => {
  const injected = table.filter((r) => r.injected).length;
  const survived = table.filter((r) => r.survived).length;
  const lost = table.reduce((n, r) => n + r.lost, 0);
  const pad = (s: string, n: number) => (s.length > n ? `${s.slice(0, n - 1)}…` : s.padEnd(n));
  const lines = [
    '',
    `${pad('fault', 40)} ${pad('injected', 8)} ${pad('survived', 8)} ${pad('lost', 4)} what the UI showed`,
    ...table.map((r) => `${pad(r.fault, 40)} ${pad(r.injected ? 'yes' : 'no', 8)} ${pad(r.survived ? 'yes' : 'NO', 8)} ${pad(String(r.lost), 4)} ${r.shown}`),
    '',
    ...table.map((r) => `  ${r.fault}: ${r.how}`),
    '',
    `faults: ${injected} injected, ${survived} survived, ${lost} items lost`,
  ];
  console.log(lines.join('\n'));
  for (const c of [() => main?.services.dispose(), ...cleanups.reverse(), () => fake.close()]) {
    try {
      await c();
    } catch (err) {
      console.error(`faults cleanup: ${(err as Error).message}`);
    }
  }
});

describe('faults', () => {
  it('SIGKILL the worker mid-generation', async () => {
    const row = fault('worker SIGKILL mid-generation', 'SIGKILL to runtime.workerPid after the first step of a 200-step job, another job queued behind it');
    const s = main.services;
    await s.runtime.ensureStarted();
    const steps: number[] = [];
    const off = s.hub.subscribe((name, p) => name === 'jobs.progress' && steps.push((p as JobProgress).step));
    const doomed = s.jobs.submit(params(s, { steps: 200, width: 128, height: 128 }));
    const queued = s.jobs.submit(params(s));
    await waitFor(() => steps.length >= 1);
    const statusFrom = main.runtimeEvents.length;
    const restartsBefore = s.runtime.status().restarts;
    process.kill(s.runtime.workerPid!, 'SIGKILL');
    row.injected = true;
    await s.jobs.whenIdle();
    off();
    const failed = jobOf(s, doomed.id);
    row.shown = `job ${failed.state} ${failed.error?.code}: ${failed.error?.message}`;
    expect(failed.state).toBe('failed');
    expect(failed.error?.code).toBe('RUNTIME_CRASHED');
    expect(failed.error?.message).toMatch(/The Python worker stopped: it was killed \(SIGKILL\)\. Your job failed; the runtime restarts by itself\./);
    expect(failed.generationId).toBeNull();
    // The queue panel learns it from the job's last event.
    expect(main.jobEvents.filter((j) => j.id === doomed.id).at(-1)).toMatchObject({ state: 'failed', error: failed.error });
    // The runtime said so, then came back; the job queued behind ran.
    expect(main.runtimeEvents.slice(statusFrom).some((r) => r.state === 'restarting' && /The Python worker stopped \(SIGKILL\)/.test(r.message))).toBe(true);
    expect(s.runtime.status()).toMatchObject({ state: 'ready', restarts: restartsBefore + 1 });
    const behind = jobOf(s, queued.id);
    expect(behind.state, JSON.stringify(behind.error)).toBe('done');
    await check(s, row, [behind.generationId!]);
    row.survived = true;
  });

  it('SIGKILL the worker mid-model-load', async () => {
    const row = fault('worker SIGKILL mid-model-load', 'SIGKILL when the worker logs "Loading <model>" for a model not yet resident (before any step)');
    const s = main.services;
    const demo = s.models.list().find((m) => m.source === 'embedded' && m.kind === 'checkpoint')!;
    await s.runtime.ensureStarted();
    const steps: number[] = [];
    const off = s.hub.subscribe((name, p) => name === 'jobs.progress' && steps.push((p as JobProgress).step));
    let jobId = '';
    let stepsAtKill = -1;
    let loadLine = '';
    main.onLog.fn = (line) => {
      if (!jobId || loadLine || !line.startsWith(`worker[${jobId}] info: Loading `)) return;
      loadLine = line;
      stepsAtKill = steps.length;
      process.kill(s.runtime.workerPid!, 'SIGKILL');
      row.injected = true;
    };
    try {
      jobId = s.jobs.submit(params(s, { modelId: demo.id, steps: 4 })).id;
      await s.jobs.whenIdle();
    } finally {
      main.onLog.fn = null;
      off();
    }
    expect(loadLine).toMatch(/Loading atelier-shapes \(Stable Diffusion 1\.5/);
    expect(stepsAtKill).toBe(0); // killed while loading: not one step had run
    const failed = jobOf(s, jobId);
    row.shown = `job ${failed.state} ${failed.error?.code}: ${failed.error?.message}`;
    expect(failed.state).toBe('failed');
    expect(failed.error?.code).toBe('RUNTIME_CRASHED');
    expect(failed.error?.message).toMatch(/it was killed \(SIGKILL\)/);
    // Retried, the same model loads and generates.
    const retry = jobOf(s, s.jobs.retry(jobId).id);
    await s.jobs.whenIdle();
    const retried = jobOf(s, retry.id);
    expect(retried.state, JSON.stringify(retried.error)).toBe('done');
    await check(s, row, [retried.generationId!]);
    row.survived = true;
  });

  it('SIGKILL the worker mid-training: it resumes from its last checkpoint', async () => {
    const row = fault('worker SIGKILL mid-training', `SIGKILL to the worker as the first checkpoint (step ${TRAIN.checkpointEvery} of ${TRAIN.steps}) is reported`);
    const s = main.services;
    const datasetId = addHeartDataset(s.datasets);
    const progress: number[] = [];
    let killedAt = 0;
    let before: (TrainingJob & { lossHistory: [number, number][] }) | null = null;
    let jobId = '';
    const trainingFrom = main.trainingEvents.length;
    const off = s.hub.subscribe((name, p) => {
      if (name === 'training.progress') progress.push((p as TrainingProgress).step);
      if (name === 'training.changed' && !killedAt && (p as TrainingJob).id === jobId && (p as TrainingJob).checkpointStep > 0 && (p as TrainingJob).state === 'running') {
        killedAt = progress.length;
        before = s.training.get(jobId);
        process.kill(s.runtime.workerPid!, 'SIGKILL');
        row.injected = true;
      }
    });
    try {
      jobId = s.training.start({ name: 'faults-worker', datasetId, modelId: tinyIn(s), config: TrainingConfig.parse(TRAIN) }).id;
      await waitFor(() => !!killedAt || ['done', 'failed'].includes(s.training.get(jobId).state), 300000);
      expect(killedAt, 'the training ended before its first checkpoint').toBeGreaterThan(0);
      await s.training.whenIdle();
    } finally {
      off();
    }
    const b = before!;
    const done = s.training.get(jobId);
    const resumeNote = main.trainingEvents.slice(trainingFrom).find((j) => j.id === jobId && /The Python worker stopped/.test(j.message));
    row.shown = `training: ${resumeNote?.message ?? '(no note)'} → ${done.state}`;
    expect(resumeNote?.message).toMatch(/^The Python worker stopped: it was killed \(SIGKILL\)\. Resuming from step \d+…$/);
    expect(done.state, done.message).toBe('done');
    // Resumed from the checkpoint: the first step after the kill continues from it, not from 1.
    const after = progress.slice(killedAt);
    // (steps the worker had already sent before it died may come first; the resumed run starts over from its checkpoint)
    const firstAfter = after.find((step, i) => i > 0 && step <= after[i - 1]) ?? null;
    const resumedFrom = (firstAfter ?? after[0]) - 1;
    expect(resumedFrom).toBeGreaterThanOrEqual(b.checkpointStep);
    expect(resumedFrom).toBeGreaterThan(0);
    expect(progress[progress.length - 1]).toBe(TRAIN.steps);
    expect(done.lossHistory.map(([step]) => step)).toEqual(Array.from({ length: TRAIN.steps }, (_, i) => i + 1));
    const kept = b.lossHistory.filter(([step]) => step <= b.checkpointStep);
    expect(done.lossHistory.slice(0, kept.length)).toEqual(kept);
    const lora = s.models.get(done.outputModelId!);
    expect(fs.existsSync(lora.path)).toBe(true);
    row.shown += ` (checkpoint ${b.checkpointStep}, resumed at step ${resumedFrom + 1})`;
    await check(s, row);
    row.survived = true;
  }, 400000);

  it('the OpenAI server hanging: the cloud job times out once, saves nothing, and the next succeeds', async () => {
    const row = fault('OpenAI server hanging', 'tests/fake-openai.ts scripted to never answer; CloudService timeoutMs 1500');
    const s = main.services;
    const before = { total: s.history.list().total, files: filesUnder(s.history.dir, 'images').length };
    fake.reset();
    fake.script.push({ hang: true });
    row.injected = true;
    const hung = await runJob(s, cloudParams('a lighthouse that never arrives'));
    row.shown = `job ${hung.state} ${hung.error?.code}: ${hung.error?.message}`;
    expect(hung.state).toBe('failed');
    expect(hung.error?.code).toBe('CLOUD_UNAVAILABLE');
    expect(hung.error?.message).toMatch(/OpenAI did not answer in time\. Nothing was saved/);
    expect(hung.note).toBeNull();
    expect(fake.imageRequests).toHaveLength(1); // a timed-out request may be billed: never sent again
    expect({ total: s.history.list().total, files: filesUnder(s.history.dir, 'images').length }).toEqual(before);
    const ok = await runJob(s, cloudParams('a lighthouse at dusk'));
    expect(ok.state, JSON.stringify(ok.error)).toBe('done');
    expect(fake.imageRequests).toHaveLength(2);
    await check(s, row, [ok.generationId!]);
    row.survived = true;
  });

  it('the chosen interpreter (ATELIER_PYTHON) deleted while the app runs: a clear status and error, and it works again once restored', async () => {
    const row = fault('chosen interpreter deleted while running', "the app's pythonOverride is a wrapper script in a temp dir: rm -rf the dir while a job runs, then SIGKILL to the worker");
    const s = main.services;
    await s.runtime.ensureStarted();
    const steps: number[] = [];
    const off = s.hub.subscribe((name, p) => name === 'jobs.progress' && steps.push((p as JobProgress).step));
    const running = s.jobs.submit(params(s, { steps: 200, width: 128, height: 128 }));
    const queued = s.jobs.submit(params(s));
    await waitFor(() => steps.length >= 1);
    fs.rmSync(path.dirname(path.dirname(mainPython)), { recursive: true, force: true });
    const statusFrom = main.runtimeEvents.length;
    try {
      process.kill(s.runtime.workerPid!, 'SIGKILL');
      row.injected = true;
      await s.jobs.whenIdle();
    } finally {
      off();
      // Put it back now (the runtime looks again only at the next job), so later faults have it even if this one fails.
      writeWrapper(mainPython);
    }
    const crashed = jobOf(s, running.id);
    const refused = jobOf(s, queued.id);
    const status = s.runtime.status();
    row.shown = `runtime ${status.state}: ${status.message} / queued job ${refused.state} ${refused.error?.code}`;
    expect(crashed).toMatchObject({ state: 'failed', error: { code: 'RUNTIME_CRASHED' } });
    expect(refused.state).toBe('failed');
    expect(refused.error?.code).toBe('RUNTIME_UNAVAILABLE');
    expect(refused.error?.message).toBe(`The Python interpreter ${mainPython} is gone (deleted or moved). Point ATELIER_PYTHON at a working interpreter, or unset it to let Atelier use its own runtime.`);
    expect(status).toMatchObject({ state: 'failed', message: refused.error?.message });
    // It does not keep restarting an interpreter that is not there.
    expect(main.runtimeEvents.slice(statusFrom).filter((r) => r.state === 'restarting' || r.state === 'starting')).toEqual([]);

    const back = jobOf(s, s.jobs.retry(refused.id).id);
    await s.jobs.whenIdle();
    expect(jobOf(s, back.id).state, JSON.stringify(jobOf(s, back.id).error)).toBe('done');
    expect(s.runtime.status().state).toBe('ready');
    await check(s, row, [jobOf(s, back.id).generationId!]);
    row.survived = true;
  });

  it('SIGKILL the app mid-batch: the finished batches stay, the rest run at the next start', async () => {
    const row = fault('app SIGKILL mid-batch', 'SIGKILL to a child process running createServices with 8 queued batches of 2, 150 ms after the 3rd landed');
    const COUNT = 8;
    const dataDir = tmpDir('atelier-faults-appbatch-');
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'app-batch.fixture.ts'), dataDir, modelsDir, python(), String(COUNT)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...WORKER_ENV },
    });
    cleanups.push(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
    const done: string[] = [];
    let workers: number[] = [];
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error('the app did not land 3 batches within 5 minutes')), 300000);
      child.once('exit', (code) => reject(new Error(`the app exited (${code}) before it was killed`)));
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const l of lines) if (l.startsWith('done ')) done.push(l.slice(5));
        if (done.length >= 3 && !row.injected) {
          row.injected = true;
          // while the next batch is being generated and written
          clearTimeout(timer);
          setTimeout(() => {
            workers = childrenOf(child.pid!);
            child.kill('SIGKILL');
            resolve();
          }, 150);
        }
      });
    });
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
    // The worker notices its app is gone (stdin EOF) and exits by itself.
    for (const pid of workers) await waitFor(() => !alive(pid), 60000);

    // As a restart finds it, before it sweeps anything:
    const raw = inspect(dataDir);
    expect(raw.integrity).toBe('ok');
    expect(missingGenerations(dataDir, done)).toEqual([]);
    expect(raw.rowsWithoutFile).toEqual([]);
    // A file without a row can only be one the kill caught before its batch committed (never reported
    // finished): the next start sweeps it, which the checker below verifies.

    const again = start(dataDir);
    const stop = owned(again);
    const s = again.services;
    const requeued = s.jobs.list().filter((j) => j.state === 'queued' || j.state === 'running');
    const committed = s.history.count().total;
    expect(requeued.length).toBe(COUNT - committed);
    await s.jobs.whenIdle();
    // Every one of the batch ran exactly once: none lost, none twice.
    const prompts = s.history.list({ limit: 100 }).items.map((g) => g.prompt);
    const counts = Array.from({ length: COUNT }, (_, i) => prompts.filter((p) => p === `drill ${i}`).length);
    row.lost += counts.filter((n) => n === 0).length;
    const swept = again.logs.find((l) => /orphan file/.test(l));
    row.shown = `${done.length} batches reported before the kill, ${committed} committed, ${requeued.length} re-queued at the next start${swept ? ` (${swept})` : ''}`;
    const toSweep = raw.halfFiles.length + raw.orphans.length;
    expect(swept ?? null).toBe(toSweep ? `history: removed ${toSweep} orphan file(s) left by an interrupted write` : null);
    expect(counts).toEqual(Array.from({ length: COUNT }, () => 1));
    expect(s.jobs.list().filter((j) => j.state === 'failed')).toEqual([]);
    await check(s, row, done);
    await stop();
    row.survived = true;
  }, 400000);

  it('SIGKILL the app mid-training: the next start resumes it from its last checkpoint', async () => {
    const row = fault('app SIGKILL mid-training', `SIGKILL to a child process running createServices with a training, as its first checkpoint (step ${TRAIN.checkpointEvery}) is reported`);
    const dataDir = tmpDir('atelier-faults-apptrain-');
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'app-training.fixture.ts'), dataDir, modelsDir, python(), JSON.stringify(TRAIN)], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...WORKER_ENV },
    });
    cleanups.push(() => void (child.exitCode === null && child.signalCode === null && child.kill('SIGKILL')));
    let worker = 0;
    let jobId = '';
    let checkpointAtKill = 0;
    const stepsBefore: number[] = [];
    await new Promise<void>((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => reject(new Error('no checkpoint within 5 minutes')), 300000);
      child.once('exit', (code) => reject(new Error(`the app exited (${code}) before it was killed`)));
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        const lines = buf.split('\n');
        buf = lines.pop()!;
        for (const l of lines) {
          const [what, value] = l.split(' ');
          if (what === 'worker') worker = Number(value);
          if (what === 'job') jobId = value;
          if (what === 'step') stepsBefore.push(Number(value));
          if (what === 'state') reject(new Error(`the training ended (${value}) before it was killed`));
          if (what === 'checkpoint' && !row.injected) {
            checkpointAtKill = Number(value);
            child.kill('SIGKILL');
            row.injected = true;
            clearTimeout(timer);
            resolve();
          }
        }
      });
    });
    await new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r(null) : child.once('exit', r)));
    // The orphaned worker stops at its input's EOF (writing its last step into the checkpoint); a
    // restart must not run a second trainer on the same checkpoint while it does.
    expect(worker).toBeGreaterThan(0);
    await waitFor(() => !alive(worker), 60000);
    expect(inspect(dataDir).integrity).toBe('ok');
    expect(checkpointAtKill).toBeGreaterThan(0);
    expect(checkpointAtKill).toBeLessThan(TRAIN.steps);

    const again = start(dataDir);
    const stop = owned(again);
    const s = again.services;
    const interrupted = s.training.get(jobId);
    row.shown = `killed at step ${stepsBefore.at(-1)}; next start: training ${interrupted.state}: ${interrupted.message}`;
    expect(interrupted.state).toBe('interrupted');
    expect(interrupted.message).toMatch(new RegExp(`^Atelier stopped during training\\. Resume continues from the checkpoint at step ${interrupted.checkpointStep} of ${TRAIN.steps}\\.$`));
    expect(interrupted.checkpointStep).toBeGreaterThanOrEqual(checkpointAtKill);
    expect(interrupted.lossHistory.map(([step]) => step)).toEqual(Array.from({ length: interrupted.checkpointStep }, (_, i) => i + 1));

    const steps: number[] = [];
    const off = s.hub.subscribe((name, p) => name === 'training.progress' && steps.push((p as TrainingProgress).step));
    const resumed = s.training.resume(jobId);
    expect(resumed.message).toBe(`Resuming from step ${interrupted.checkpointStep}…`);
    await s.training.whenIdle();
    off();
    const done = s.training.get(jobId);
    expect(done.state, done.message).toBe('done');
    // The step count continues from the checkpoint (the orphan may have saved one more step on its way out).
    expect(steps[0] - 1).toBeGreaterThanOrEqual(interrupted.checkpointStep);
    expect(steps[0]).toBeGreaterThan(1);
    expect(steps).toEqual(Array.from({ length: TRAIN.steps - steps[0] + 1 }, (_, i) => steps[0] + i));
    expect(done.lossHistory.map(([step]) => step)).toEqual(Array.from({ length: TRAIN.steps }, (_, i) => i + 1));
    expect(fs.existsSync(s.models.get(done.outputModelId!).path)).toBe(true);
    row.shown += ` → resumed at step ${steps[0]}, ${done.state}`;
    await check(s, row);
    await stop();
    row.survived = true;
  }, 500000);

  it('a full disk while writing an image: DISK_FULL, nothing half saved, and the next job succeeds once there is space', async () => {
    const row = fault('full disk while writing an image', '');
    const dataDir = tmpDir('atelier-faults-disk-');
    const imagesDir = path.join(dataDir, 'images');
    fs.mkdirSync(imagesDir, { recursive: true });
    const SIZE = 4 * 1024 * 1024;
    let mounted = false;
    let refused = 'ATELIER_FAULTS_NO_MOUNT is set';
    if (!process.env.ATELIER_FAULTS_NO_MOUNT) {
      const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${SIZE}`, 'tmpfs', imagesDir], { encoding: 'utf8' });
      mounted = r.status === 0;
      refused = (r.stderr || r.error?.message || `exit ${r.status}`).trim();
    }
    if (mounted) cleanups.push(() => void (isMount(imagesDir) && spawnSync('umount', ['-l', imagesDir])));
    row.how = mounted
      ? `a real ${SIZE / 1024 / 1024} MB tmpfs mounted over the library's images/ folder, filled so the 1st image of a batch of 2 fits and the 2nd does not`
      : `mount refused (${refused}): the image writes go to /dev/full (a real ENOSPC) from the 2nd image of a batch of 2 on`;
    console.log(`full disk: ${mounted ? `ran on a real tmpfs (size=${SIZE})` : `ran with the /dev/full seam: mount refused (${refused})`}`);

    const st = start(dataDir);
    const stop = owned(st);
    const s = st.services;
    const p = params(s, { batch: 2, seed: 4242 });
    // The same request twice gives the same bytes: learn the sizes, then leave room for the first only.
    const probe = await runJob(s, p);
    expect(probe.state, JSON.stringify(probe.error)).toBe('done');
    const probeGen = s.history.get(probe.generationId!);
    const sizes = probeGen.images.map((im) => fs.statSync(path.join(dataDir, ...im.path.split('/'))).size);
    const filler = path.join(imagesDir, 'filler.bin');
    const realWrite = fs.writeFileSync;
    let spy: { mockRestore(): void } | null = null;
    if (mounted) {
      const page = 4096;
      const fd = fs.openSync(filler, 'w');
      try {
        const chunk = Buffer.alloc(64 * 1024, 1);
        for (;;) fs.writeSync(fd, chunk);
      } catch (err) {
        expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
      } finally {
        fs.closeSync(fd);
      }
      const room = Math.ceil(sizes[0] / page) * page;
      fs.truncateSync(filler, Math.max(0, fs.statSync(filler).size - room));
      const statfs = fs.statfsSync(imagesDir);
      const free = statfs.bavail * statfs.bsize;
      console.log(`full disk: ${free} bytes free on the tmpfs for images of ${sizes.join(' and ')} bytes`);
      expect(free).toBeGreaterThanOrEqual(sizes[0]);
      expect(free).toBeLessThan(sizes[0] + sizes[1]);
    } else {
      let writes = 0;
      spy = vi.spyOn(fs, 'writeFileSync').mockImplementation(((file: fs.PathOrFileDescriptor, data: string | NodeJS.ArrayBufferView, opts?: fs.WriteFileOptions) => {
        const target = typeof file === 'number' ? fs.readlinkSync(`/proc/self/fd/${file}`) : String(file);
        if (target.startsWith(imagesDir + path.sep) && target.includes(TEMP_MARK) && ++writes > 1) return realWrite('/dev/full', data, opts);
        return realWrite(file, data, opts);
      }) as typeof fs.writeFileSync);
    }
    row.injected = true;
    const before = s.history.count().total;
    let full: Job;
    try {
      full = await runJob(s, p);
    } finally {
      spy?.mockRestore();
    }
    row.shown = `job ${full.state} ${full.error?.code}: ${full.error?.message}`;
    expect(full.state).toBe('failed');
    expect(full.error?.code).toBe('DISK_FULL');
    expect(full.error?.message).toMatch(/The disk is full: free some space and try again\. Nothing was saved half\./);
    expect(s.history.count().total).toBe(before);
    // Neither the first image (written, then taken back) nor a temp file of the second is left.
    const left = filesUnder(dataDir, 'images').filter((f) => f !== 'images/filler.bin');
    expect(left.sort()).toEqual(probeGen.images.map((im) => im.path).sort());
    // Space is back: the same request succeeds.
    fs.rmSync(filler, { force: true });
    const retried = jobOf(s, s.jobs.retry(full.id).id);
    await s.jobs.whenIdle();
    expect(jobOf(s, retried.id).state).toBe('done');
    await check(s, row, [probe.generationId!, jobOf(s, retried.id).generationId!]);
    await stop();
    if (mounted) expect(spawnSync('umount', [imagesDir]).status).toBe(0);
    row.survived = true;
  }, 300000);

  it('the venv deleted while the app runs: a clear status and error, no job lost, and it works again once restored', async () => {
    const row = fault('venv deleted while the app runs', 'a provisioned venv (wrapper interpreter + ready marker) in a temp cache root, rm -rf while a job runs, then SIGKILL to the worker');
    const cacheRoot = tmpDir('atelier-faults-cache-');
    const venv = venvDir({ runtimeDir: RUNTIME, cacheRoot });
    const makeVenv = () => {
      writeWrapper(venvPython(venv));
      fs.writeFileSync(path.join(venv, '.atelier-ready'), JSON.stringify({ lock: lockHash(RUNTIME), python: python(), at: new Date().toISOString() }));
    };
    makeVenv();
    const st = start(tmpDir('atelier-faults-venv-'), { pythonOverride: undefined, cacheRoot });
    const stop = owned(st);
    const s = st.services;
    await s.runtime.ensureStarted();
    expect(s.runtime.status().state).toBe('ready');

    const steps: number[] = [];
    const off = s.hub.subscribe((name, p) => name === 'jobs.progress' && steps.push((p as JobProgress).step));
    const running = s.jobs.submit(params(s, { steps: 200, width: 128, height: 128 }));
    const queued = s.jobs.submit(params(s));
    await waitFor(() => steps.length >= 1);
    fs.rmSync(venv, { recursive: true, force: true });
    const statusFrom = st.runtimeEvents.length;
    process.kill(s.runtime.workerPid!, 'SIGKILL');
    row.injected = true;
    await s.jobs.whenIdle();
    off();
    const crashed = jobOf(s, running.id);
    const refused = jobOf(s, queued.id);
    const status = s.runtime.status();
    row.shown = `runtime ${status.state}: ${status.message} / queued job ${refused.state} ${refused.error?.code}: ${refused.error?.message}`;
    expect(crashed).toMatchObject({ state: 'failed', error: { code: 'RUNTIME_CRASHED' } });
    expect(refused.state).toBe('failed');
    expect(refused.error?.code).toBe('RUNTIME_UNAVAILABLE');
    expect(refused.error?.message).toMatch(/The Python runtime is gone/);
    expect(status.state).toBe('not_installed');
    expect(status.message).toMatch(/The Python runtime is gone/);
    // Nothing keeps trying in the background, and every job is accounted for.
    expect(st.runtimeEvents.slice(statusFrom).filter((r) => r.state === 'restarting' || r.state === 'starting')).toEqual([]);
    expect(s.jobs.list().filter((j) => j.state === 'queued' || j.state === 'running')).toEqual([]);

    makeVenv(); // what Settings → Runtime → Install does, in short
    const back = jobOf(s, s.jobs.retry(refused.id).id);
    await s.jobs.whenIdle();
    expect(jobOf(s, back.id).state, JSON.stringify(jobOf(s, back.id).error)).toBe('done');
    expect(s.runtime.status().state).toBe('ready');
    await check(s, row, [jobOf(s, back.id).generationId!]);
    await stop();
    row.survived = true;
  }, 300000);
});
