/**
 * `npm run bench`: the same N generations through the whole app path (services,
 * job queue, worker protocol, progress + previews, PNG into the library, SQLite
 * row) and through a bare diffusers script, alternating image by image in one
 * run so both see the same machine; prints the ratio, and
 * the time to the first image from a cold start for both.
 *
 * ATELIER_BENCH_MODEL=path/to/diffusers-folder benchmarks a real SD 1.5 model
 * (on a GPU); by default a tiny random-weight model built here, on this device.
 */
import { execFileSync, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GenerateParams } from '../../src/shared/contract';
import { createServices } from '../../src/main/services';
import { defaultCacheRoot, readyPython } from '../../src/main/services/runtime/provision';
import { memoryBackend } from '../../src/main/services/settings/settings';

const ROOT = path.resolve(__dirname, '..', '..');
const RUNTIME = path.join(ROOT, 'python-runtime');
const N = Number(process.env.ATELIER_BENCH_N ?? 5);
const STEPS = Number(process.env.ATELIER_BENCH_STEPS ?? 20);
// The tiny model's VAE downsamples by 2 only: 64 px keeps its attention small, as 512 px does for SD 1.5.
const SIZE = Number(process.env.ATELIER_BENCH_SIZE ?? (process.env.ATELIER_BENCH_MODEL ? 512 : 64));

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
const sd = (xs: number[]) => Math.sqrt(mean(xs.map((x) => (x - mean(xs)) ** 2)));

async function main() {
  const python = process.env.ATELIER_PYTHON || readyPython({ runtimeDir: RUNTIME, cacheRoot: defaultCacheRoot() });
  if (!python) throw new Error('The Python runtime is not provisioned: run `npm run setup`.');
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-bench-'));
  let model = process.env.ATELIER_BENCH_MODEL;
  if (!model) {
    execFileSync(python, ['-m', 'atelier_runtime.testing.tiny', path.join(tmp, 'models')], { cwd: RUNTIME, env: { ...process.env, PYTHONPATH: RUNTIME }, stdio: ['ignore', 'ignore', 'inherit'] });
    model = path.join(tmp, 'models', 'tiny-sd15');
  }
  console.log(`bench: ${N} generations, ${STEPS} steps, ${SIZE}x${SIZE}, Euler, model ${model}`);

  // The bare baseline in its own process, driven one image at a time over stdin.
  const bareOut = fs.mkdtempSync(path.join(tmp, 'bare-'));
  const bareStart = Date.now();
  const bareProc = spawn(python, [path.join(ROOT, 'tests', 'bench', 'bare_diffusers.py'), '--model', model, '--steps', String(STEPS), '--size', String(SIZE), '--out', bareOut], {
    env: { ...process.env, HF_HUB_OFFLINE: '1' },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: bareProc.stdout });
  const nextLine = (() => {
    const it = lines[Symbol.asyncIterator]();
    return async () => {
      const r = await it.next();
      if (r.done) throw new Error('the bare diffusers script exited early');
      return JSON.parse(r.value);
    };
  })();
  const bareInfo = await nextLine();
  const bareCold = (Date.now() - bareStart) / 1000;
  const bareImage = async (seed: number) => {
    bareProc.stdin.write(`${seed}\n`);
    return (await nextLine()).seconds as number;
  };

  // The app path, from a cold start.
  const t0 = Date.now();
  const services = createServices({
    dataDir: path.join(tmp, 'data'),
    appRoot: ROOT,
    settingsBackend: memoryBackend({ previewEvery: 2 }),
    shell: 'web',
    version: 'bench',
    pythonOverride: python,
    log: () => {},
  });
  const m = services.models.register(model, 'bench');
  const run = async (seed: number) => {
    const started = Date.now();
    const job = services.jobs.submit(GenerateParams.parse({ prompt: 'a red circle on a white background', negativePrompt: 'blurry', modelId: m.id, seed, steps: STEPS, width: SIZE, height: SIZE, sampler: 'Euler', cfg: 7 }));
    await services.jobs.whenIdle();
    const done = services.jobs.list().find((j) => j.id === job.id)!;
    if (done.state !== 'done') throw new Error(`bench job ${done.state}: ${done.error?.message}`);
    return (Date.now() - started) / 1000;
  };
  await run(1);
  const appCold = (Date.now() - t0) / 1000;

  // Alternate: app, bare, app, bare … so both see the same machine.
  const app: number[] = [];
  const bare: number[] = [];
  for (let i = 1; i <= N; i++) {
    app.push(await run(1 + i));
    bare.push(await bareImage(1 + i));
  }
  bareProc.stdin.end();
  await services.dispose();

  const ratio = mean(app) / mean(bare);
  const row = (name: string, xs: number[], cold: number) =>
    `${name.padEnd(18)} ${mean(xs).toFixed(3).padStart(8)} s ± ${sd(xs).toFixed(3)}   cold start to first image ${cold.toFixed(2)} s`;
  console.log(`device: ${bareInfo.device}`);
  console.log(row('bare diffusers', bare, bareCold));
  console.log(row('Atelier app path', app, appCold));
  console.log(`ratio app/bare: ${ratio.toFixed(3)}  (overhead ${((ratio - 1) * 100).toFixed(1)}%)`);
  console.log(`bare cold start: import ${bareInfo.import_s.toFixed(2)} s, load ${bareInfo.load_s.toFixed(2)} s`);
  fs.rmSync(tmp, { recursive: true, force: true });
}

main().catch((err) => {
  console.error(`bench failed: ${err?.message ?? err}`);
  process.exit(1);
});
