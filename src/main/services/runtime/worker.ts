/**
 * One running Python worker, spoken to over stdio JSON lines (python-runtime/PROTOCOL.md).
 * Knows nothing of jobs or history: it sends requests, routes events to the
 * request that owns them, and reports its own death.
 */
import { childEnv } from '../../lib/env';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { AtelierError, isErrorCode } from '../../../shared/errors';

export const PROTOCOL_VERSION = 1;

export interface WorkerHello {
  type: 'hello';
  protocol: number;
  runtime: string;
  python: string;
  torch: string;
  diffusers: string;
  transformers?: string;
  device: string;
  dtype: string;
  devices: { kind: string; name: string; vram_mb: number; index?: number }[];
  memory_mode: string;
}

export interface WorkerEvent {
  type: 'progress' | 'log' | 'result' | 'error' | 'hello';
  id?: string | null;
  [key: string]: unknown;
}

interface Pending {
  method: string;
  onEvent?: (e: WorkerEvent) => void;
  resolve: (value: any) => void;
  reject: (err: Error) => void;
}

export interface WorkerSpawnOptions {
  python: string;
  runtimeDir: string;
  env?: Record<string, string>;
  log?: (line: string) => void;
  helloTimeoutMs?: number;
}

export class WorkerProcess {
  readonly hello: Promise<WorkerHello>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private child: ChildProcessWithoutNullStreams;
  private pending = new Map<string, Pending>();
  private seq = 0;
  private stderrTail: string[] = [];
  private alive = true;
  /** Set before killing on purpose, so the crash message says why. */
  private killReason: string | null = null;

  constructor(opts: WorkerSpawnOptions) {
    const log = opts.log ?? (() => {});
    this.child = spawn(opts.python, ['-u', '-m', 'atelier_runtime.worker'], {
      cwd: opts.runtimeDir,
      // Without the app's secrets (the OpenAI key, the web token): see lib/env.
      env: childEnv({
        PYTHONPATH: opts.runtimeDir,
        PYTHONUNBUFFERED: '1',
        PYTHONIOENCODING: 'utf-8',
        HF_HUB_OFFLINE: '1',
        TRANSFORMERS_OFFLINE: '1',
        HF_HUB_DISABLE_TELEMETRY: '1',
        ...opts.env,
      }),
      stdio: ['pipe', 'pipe', 'pipe'],
      windowsHide: true,
    });

    let helloResolve!: (h: WorkerHello) => void;
    let helloReject!: (e: Error) => void;
    this.hello = new Promise((res, rej) => ((helloResolve = res), (helloReject = rej)));
    this.hello.catch(() => {}); // observed by whoever awaits it; never an unhandled rejection
    const helloTimer = setTimeout(() => {
      helloReject(new AtelierError('RUNTIME_UNAVAILABLE', `The Python worker did not start within ${Math.round((opts.helloTimeoutMs ?? 120000) / 1000)} s.`, this.lastWords()));
      this.kill('it did not say hello in time');
    }, opts.helloTimeoutMs ?? 120000);

    let buffered = '';
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => {
      buffered += chunk;
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl).trim();
        buffered = buffered.slice(nl + 1);
        if (!line) continue;
        let event: WorkerEvent;
        try {
          event = JSON.parse(line);
        } catch {
          log(`worker stdout (not protocol): ${line.slice(0, 300)}`);
          continue;
        }
        if (event.type === 'hello') {
          clearTimeout(helloTimer);
          const hello = event as unknown as WorkerHello;
          if (hello.protocol !== PROTOCOL_VERSION) {
            helloReject(new AtelierError('RUNTIME_UNAVAILABLE', `The Python worker speaks protocol ${hello.protocol}; this Atelier speaks ${PROTOCOL_VERSION}. Repair the runtime.`));
            this.kill('protocol mismatch');
          } else helloResolve(hello);
          continue;
        }
        this.route(event, log);
      }
    });
    this.child.stderr.setEncoding('utf8');
    this.child.stderr.on('data', (chunk: string) => {
      for (const line of chunk.split('\n')) {
        if (!line.trim()) continue;
        this.stderrTail.push(line);
        if (this.stderrTail.length > 40) this.stderrTail.shift();
        log(`worker: ${line}`);
      }
    });
    this.child.stdin.on('error', () => {}); // EPIPE when the worker died; the exit handler reports it

    this.exited = new Promise((resolve) => {
      const done = (code: number | null, signal: NodeJS.Signals | null) => {
        if (!this.alive) return;
        this.alive = false;
        clearTimeout(helloTimer);
        const why = this.killReason ?? (signal ? `was killed (${signal})` : `exited with code ${code}`);
        const err = new AtelierError('RUNTIME_CRASHED', `The Python worker stopped: it ${why}. Your job failed; the runtime restarts by itself.`, this.lastWords());
        helloReject(err);
        for (const p of this.pending.values()) p.reject(err);
        this.pending.clear();
        resolve({ code, signal });
      };
      this.child.on('exit', done);
      this.child.on('error', (e) => {
        this.killReason = `could not be started (${e.message})`;
        done(null, null);
      });
    });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get isAlive(): boolean {
    return this.alive;
  }

  lastWords(): string {
    return this.stderrTail.slice(-15).join('\n');
  }

  private route(event: WorkerEvent, log: (line: string) => void): void {
    const id = event.id ?? null;
    if (event.type === 'log') {
      log(`worker[${id ?? '-'}] ${event.level}: ${event.message}`);
    }
    if (id === null) {
      if (event.type === 'error') log(`worker error without id: ${JSON.stringify(event.error)}`);
      return;
    }
    const p = this.pending.get(id);
    if (!p) return;
    if (event.type === 'result') {
      this.pending.delete(id);
      p.resolve(event.result);
    } else if (event.type === 'error') {
      this.pending.delete(id);
      const e = (event.error ?? {}) as { code?: string; message?: string; detail?: string };
      p.reject(new AtelierError(isErrorCode(e.code) ? e.code : 'INTERNAL', e.message ?? 'The worker failed without a message.', e.detail ?? undefined));
    } else p.onEvent?.(event);
  }

  /** Send a request; the promise settles with its result or error event. */
  request<T = unknown>(method: string, params: Record<string, unknown> = {}, onEvent?: (e: WorkerEvent) => void, id?: string): { id: string; done: Promise<T> } {
    const rid = id ?? `r${++this.seq}`;
    const done = new Promise<T>((resolve, reject) => {
      if (!this.alive) {
        reject(new AtelierError('RUNTIME_CRASHED', 'The Python worker is not running.'));
        return;
      }
      this.pending.set(rid, { method, onEvent, resolve, reject });
      this.child.stdin.write(`${JSON.stringify({ id: rid, method, params })}\n`);
    });
    return { id: rid, done };
  }

  kill(reason: string): void {
    if (!this.alive) return;
    this.killReason ??= reason;
    this.child.kill('SIGKILL');
  }

  /** Ask politely, then close stdin (the worker exits on EOF), then kill. */
  async shutdown(graceMs = 3000): Promise<void> {
    if (!this.alive) return;
    this.killReason ??= 'was shut down';
    this.request('shutdown').done.catch(() => {});
    this.child.stdin.end();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
    await this.exited;
    clearTimeout(timer);
  }
}
