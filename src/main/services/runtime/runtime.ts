/**
 * The runtime supervisor: owns the Python worker's life. Provisions the venv
 * when needed, starts the worker and waits for `hello`, watches it with pings,
 * and restarts it with backoff when it dies or hangs. Jobs call `generate`;
 * everything else (queue, history) lives in other services.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { RuntimeStatus, Settings } from '../../../shared/contract';
import { AtelierError } from '../../../shared/errors';
import { missingModules, provision, readyPython, type ProvisionProgress } from './provision';
import { WorkerProcess, type WorkerEvent, type WorkerHello } from './worker';

export interface RuntimeOptions {
  runtimeDir: string;
  cacheRoot: string;
  settings: () => Settings;
  onStatus?: (s: RuntimeStatus) => void;
  log?: (line: string) => void;
  /** Use this interpreter as-is (tests, CI, `ATELIER_PYTHON`); skips provisioning. */
  pythonOverride?: string;
  /** Provision at start when the venv is missing (the app's first run). */
  autoProvision?: boolean;
  pingIntervalMs?: number;
  pingTimeoutMs?: number;
  helloTimeoutMs?: number;
  env?: Record<string, string>;
}

export interface GenerateRequest {
  [key: string]: unknown;
  model: string;
  out_dir: string;
}

export interface WorkerImage {
  path: string;
  seed: number;
  width: number;
  height: number;
}

export interface GenerateResult {
  images: WorkerImage[];
  family: string;
  device: string;
  dtype: string;
  memory_mode: string;
  timings: Record<string, number>;
}

const MAX_BACKOFF_MS = 30000;
const NOT_INSTALLED = 'The Python runtime is not installed. Run setup from Settings → Runtime or `npm run setup`.';
/** The provisioned venv vanished after a worker had run from it (deleted by hand, a cleaner, a moved cache). */
const RUNTIME_GONE = 'The Python runtime is gone: its folder was deleted or moved while Atelier ran. Open Settings → Runtime and press Install (or run `npm run setup`), then try again.';

export class RuntimeService {
  private worker: WorkerProcess | null = null;
  private helloInfo: WorkerHello | null = null;
  private starting: Promise<WorkerProcess> | null = null;
  private provisioning: Promise<string> | null = null;
  private provisionProgress: ProvisionProgress | null = null;
  private state: RuntimeStatus['state'] = 'stopped';
  private message = 'Not started yet.';
  private restarts = 0;
  private consecutiveFailures = 0;
  private restartTimer: NodeJS.Timeout | null = null;
  private pingTimer: NodeJS.Timeout | null = null;
  private disposed = false;
  /** A worker said hello once: a runtime missing now was deleted, not never installed. */
  private hadWorker = false;
  private log: (line: string) => void;

  constructor(private opts: RuntimeOptions) {
    this.log = opts.log ?? (() => {});
  }

  // ------------------------------------------------------------------ status

  status(): RuntimeStatus {
    const h = this.helloInfo;
    return {
      state: this.state,
      message: this.message,
      provision: this.provisionProgress ? { ...this.provisionProgress } : null,
      python: h?.python ?? null,
      versions: h ? { runtime: h.runtime, torch: h.torch, diffusers: h.diffusers, ...(h.transformers ? { transformers: h.transformers } : {}) } : {},
      device: h ? `${h.device}${h.dtype ? ` · ${h.dtype}` : ''}` : null,
      devices: h ? h.devices.map((d) => ({ kind: d.kind, name: d.name, vramMb: d.vram_mb })) : [],
      memoryMode: h?.memory_mode ?? null,
      restarts: this.restarts,
    };
  }

  get hello(): WorkerHello | null {
    return this.helloInfo;
  }

  private setState(state: RuntimeStatus['state'], message: string): void {
    this.state = state;
    this.message = message;
    this.opts.onStatus?.(this.status());
  }

  /** The interpreter to run, or null when the venv is not provisioned. */
  private interpreter(): string | null {
    const chosen = this.opts.pythonOverride || this.opts.settings().pythonPath;
    if (chosen) return chosen;
    return readyPython(this.opts);
  }

  /** Why the interpreter chosen by hand (ATELIER_PYTHON, Settings) cannot run because it is not there; null when it is. */
  private missingInterpreter(python: string): string | null {
    // (a bare name like `python3` is looked up on PATH by the spawn: nothing to check here)
    if (!path.isAbsolute(python) || fs.existsSync(python)) return null;
    const fix = this.opts.pythonOverride
      ? 'Point ATELIER_PYTHON at a working interpreter, or unset it to let Atelier use its own runtime.'
      : 'Choose another in Settings → Runtime, or clear it to let Atelier use its own runtime.';
    return `The Python interpreter ${python} is gone (deleted or moved). ${fix}`;
  }

  // ------------------------------------------------------------- provisioning

  /** Start provisioning in the background (or join the one running). */
  provision(repair = false): Promise<string> {
    if (this.provisioning) return this.provisioning;
    this.setState('provisioning', repair ? 'Rebuilding the Python runtime…' : 'Installing the Python runtime (first start)…');
    this.provisioning = provision({
      runtimeDir: this.opts.runtimeDir,
      cacheRoot: this.opts.cacheRoot,
      repair,
      log: this.log,
      onProgress: (p) => {
        this.provisionProgress = p;
        this.setState('provisioning', p.phase);
      },
    })
      .then(async (py) => {
        this.provisionProgress = null;
        await this.stopWorker();
        this.setState('stopped', 'Python runtime installed.');
        return py;
      })
      .catch((err) => {
        this.provisionProgress = null;
        this.setState('failed', (err as Error).message);
        throw err;
      })
      .finally(() => {
        this.provisioning = null;
      });
    return this.provisioning;
  }

  /** Called once at app start: warm the worker so the first image comes sooner. */
  async boot(): Promise<void> {
    const py = this.interpreter();
    if (!py) {
      if (this.opts.autoProvision) {
        await this.provision().catch(() => {});
      } else {
        this.setState('not_installed', NOT_INSTALLED);
        return;
      }
    }
    await this.ensureStarted().catch(() => {});
  }

  // ------------------------------------------------------------------ worker

  async ensureStarted(): Promise<WorkerProcess> {
    if (this.disposed) throw new AtelierError('RUNTIME_UNAVAILABLE', 'Atelier is shutting down.');
    if (this.worker?.isAlive && this.helloInfo) return this.worker;
    if (this.starting) return this.starting;
    if (this.provisioning) {
      await this.provisioning.catch(() => {
        throw new AtelierError('RUNTIME_UNAVAILABLE', this.message);
      });
    }
    const python = this.interpreter();
    if (!python) {
      this.setState('not_installed', this.hadWorker ? RUNTIME_GONE : NOT_INSTALLED);
      throw new AtelierError(
        'RUNTIME_UNAVAILABLE',
        this.hadWorker ? RUNTIME_GONE : 'The Python runtime is not installed yet: open Settings → Runtime and press Install, or run `npm run setup`.',
      );
    }
    // Spawning a path that is not there fails with a bare ENOENT: say what happened instead.
    const missing = this.missingInterpreter(python);
    if (missing) {
      this.setState('failed', missing);
      throw new AtelierError('RUNTIME_UNAVAILABLE', missing);
    }
    this.starting = this.spawn(python).finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  private async spawn(python: string): Promise<WorkerProcess> {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    this.setState(this.restarts > 0 ? 'restarting' : 'starting', 'Starting the Python worker…');
    const worker = new WorkerProcess({
      python,
      runtimeDir: this.opts.runtimeDir,
      log: this.log,
      helloTimeoutMs: this.opts.helloTimeoutMs,
      env: this.opts.env,
    });
    this.worker = worker;
    worker.exited.then(({ code, signal }) => this.onExit(worker, code, signal));
    try {
      const hello = await worker.hello;
      this.helloInfo = hello;
      this.hadWorker = true;
      this.consecutiveFailures = 0;
      const dev = hello.devices[0];
      this.setState('ready', `Ready on ${dev ? dev.name : hello.device}${dev?.vram_mb ? ` (${Math.round(dev.vram_mb / 1024)} GB)` : ''}.`);
      this.startWatchdog(worker);
      return worker;
    } catch (err) {
      this.helloInfo = null;
      worker.kill('it failed to start');
      // A chosen interpreter that lacks packages gets a message that says which.
      const chosen = this.opts.pythonOverride || this.opts.settings().pythonPath;
      if (chosen) {
        const missing = missingModules(python);
        if (missing.length) {
          const e = new AtelierError('RUNTIME_UNAVAILABLE', `${python} lacks ${missing.join(', ')}. Install them there, or clear the interpreter in Settings to let Atelier build its own.`);
          this.setState('failed', e.message);
          throw e;
        }
      }
      this.setState('failed', (err as Error).message);
      throw err;
    }
  }

  private startWatchdog(worker: WorkerProcess): void {
    const interval = this.opts.pingIntervalMs ?? 10000;
    const timeout = this.opts.pingTimeoutMs ?? 30000;
    if (this.pingTimer) clearInterval(this.pingTimer);
    let inFlight = false;
    this.pingTimer = setInterval(() => {
      if (!worker.isAlive || inFlight) return;
      inFlight = true;
      const timer = setTimeout(() => worker.kill(`stopped responding (no answer to a ping in ${Math.round(timeout / 1000)} s)`), timeout);
      worker
        .request('ping')
        .done.catch(() => {})
        .finally(() => {
          clearTimeout(timer);
          inFlight = false;
        });
    }, interval);
    this.pingTimer.unref?.();
  }

  private onExit(worker: WorkerProcess, code: number | null, signal: string | null): void {
    if (this.worker !== worker) return;
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.worker = null;
    this.helloInfo = null;
    if (this.disposed || this.state === 'stopped') return;
    this.consecutiveFailures++;
    this.restarts++;
    const python = this.interpreter();
    if (!python) {
      // The venv went away under the worker (a repair removes it on purpose and reports its own progress).
      if (!this.provisioning) this.setState('not_installed', RUNTIME_GONE);
      return;
    }
    const missing = this.missingInterpreter(python);
    if (missing) {
      // No restart loop on an interpreter that is not there; the next job tries again (it may be back).
      this.setState('failed', missing);
      return;
    }
    if (this.consecutiveFailures > 5) {
      this.setState('failed', `The Python worker keeps failing (last: ${signal ?? `code ${code}`}). See the log, or Repair the runtime.`);
      return;
    }
    const delay = Math.min(MAX_BACKOFF_MS, 500 * 2 ** (this.consecutiveFailures - 1));
    this.setState('restarting', `The Python worker stopped (${signal ?? `code ${code}`}); restarting in ${(delay / 1000).toFixed(1)} s.`);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (!this.disposed && !this.worker) this.ensureStarted().catch(() => {});
    }, delay);
    this.restartTimer.unref?.();
  }

  async restart(): Promise<RuntimeStatus> {
    await this.stopWorker();
    this.consecutiveFailures = 0;
    await this.ensureStarted().catch(() => {});
    return this.status();
  }

  private async stopWorker(): Promise<void> {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    const w = this.worker;
    this.worker = null;
    this.helloInfo = null;
    if (w) await w.shutdown();
  }

  // -------------------------------------------------------------------- jobs

  /** Run one generation; `id` is the job id, so `cancel(id)` reaches it. */
  async generate(id: string, request: GenerateRequest, onEvent: (e: WorkerEvent) => void): Promise<GenerateResult> {
    const worker = await this.ensureStarted();
    return worker.request<GenerateResult>('generate', request, onEvent, id).done;
  }

  /** Run one LoRA training (PROTOCOL.md `train`); `id` is the training job's id, so `cancel(id)` reaches it. */
  async train(id: string, request: Record<string, unknown>, onEvent: (e: WorkerEvent) => void): Promise<unknown> {
    const worker = await this.ensureStarted();
    return worker.request<unknown>('train', request, onEvent, id).done;
  }

  /** Canny edges through the worker (answered at once, even while a generation runs). */
  async canny(params: { image: string; low: number; high: number; out: string; width?: number; height?: number }): Promise<{ path: string; width: number; height: number; edge_fraction: number }> {
    const worker = await this.ensureStarted();
    return worker.request<{ path: string; width: number; height: number; edge_fraction: number }>('canny', params).done;
  }

  async cancel(id: string): Promise<boolean> {
    const w = this.worker;
    if (!w?.isAlive) return false;
    const r = await w.request<{ cancelled: boolean }>('cancel', { target: id }).done.catch(() => ({ cancelled: false }));
    return r.cancelled;
  }

  /** For tests and the crash drill: the worker's pid. */
  get workerPid(): number | undefined {
    return this.worker?.pid;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.state = 'stopped';
    await this.stopWorker();
  }
}
