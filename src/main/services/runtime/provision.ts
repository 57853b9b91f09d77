/**
 * Provisioning the Python runtime: a venv built from the lock file, kept in a
 * cache folder outside the app and keyed by the lock's hash, so a new lock
 * gets a new venv and an unchanged one is reused (by the app, `npm run setup`
 * and CI alike). Idempotent; `repair` rebuilds from scratch, which is the
 * answer to the broken-venv reports every Python-backed app receives.
 */
import { childEnv } from '../../lib/env';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AtelierError } from '../../../shared/errors';
import { writeFileAtomic } from '../../lib/fsx';

export interface ProvisionProgress {
  phase: string;
  fraction: number;
}

export interface ProvisionOptions {
  runtimeDir: string; // python-runtime/
  cacheRoot: string; // e.g. ~/.cache/atelier
  basePython?: string; // interpreter to build the venv from; found on PATH when empty
  repair?: boolean;
  /** Modules that must import for the venv to count as working (default: the worker's). */
  requiredModules?: string[];
  onProgress?: (p: ProvisionProgress) => void;
  log?: (line: string) => void;
}

/** Modules the worker imports; checked to tell a working venv from a broken one. */
export const REQUIRED_MODULES = ['torch', 'diffusers', 'transformers', 'safetensors', 'PIL', 'numpy', 'cv2'];
export const MIN_PYTHON: [number, number] = [3, 10];

export function defaultCacheRoot(): string {
  if (process.env.ATELIER_CACHE_DIR) return process.env.ATELIER_CACHE_DIR;
  if (process.platform === 'win32') return path.join(process.env.LOCALAPPDATA ?? os.homedir(), 'Atelier', 'cache');
  if (process.platform === 'darwin') return path.join(os.homedir(), 'Library', 'Caches', 'Atelier');
  return path.join(process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'atelier');
}

export function lockHash(runtimeDir: string): string {
  return createHash('sha256').update(fs.readFileSync(path.join(runtimeDir, 'requirements.lock'))).digest('hex').slice(0, 16);
}

export function venvDir(opts: Pick<ProvisionOptions, 'runtimeDir' | 'cacheRoot'>): string {
  return path.join(opts.cacheRoot, 'python', `venv-${lockHash(opts.runtimeDir)}`);
}

export function venvPython(dir: string): string {
  return process.platform === 'win32' ? path.join(dir, 'Scripts', 'python.exe') : path.join(dir, 'bin', 'python');
}

/** Version of an interpreter, or null when it does not run. */
export function pythonVersion(python: string): [number, number, number] | null {
  const r = spawnSync(python, ['-c', 'import sys; print("%d.%d.%d" % sys.version_info[:3])'], { encoding: 'utf8', timeout: 20000 });
  if (r.status !== 0) return null;
  const m = /^(\d+)\.(\d+)\.(\d+)/.exec(r.stdout.trim());
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : null;
}

export function findBasePython(preferred?: string): string {
  const candidates = preferred ? [preferred] : process.platform === 'win32' ? ['python', 'py'] : ['python3', 'python'];
  for (const c of candidates) {
    const v = pythonVersion(c);
    if (v && (v[0] > MIN_PYTHON[0] || (v[0] === MIN_PYTHON[0] && v[1] >= MIN_PYTHON[1]))) return c;
    if (preferred) {
      throw new AtelierError(
        'RUNTIME_UNAVAILABLE',
        v ? `${preferred} is Python ${v.join('.')}; Atelier needs ${MIN_PYTHON.join('.')} or newer.` : `${preferred} does not run as a Python interpreter.`,
      );
    }
  }
  throw new AtelierError('RUNTIME_UNAVAILABLE', `No Python ${MIN_PYTHON.join('.')}+ found on PATH. Install Python, or choose an interpreter in Settings → Runtime.`);
}

/** Which of the required modules an interpreter lacks (empty: it can run the worker). */
export function missingModules(python: string, modules: string[] = REQUIRED_MODULES): string[] {
  const code = `import importlib.util, json; print(json.dumps([m for m in ${JSON.stringify(modules)} if importlib.util.find_spec(m) is None]))`;
  const r = spawnSync(python, ['-c', code], { encoding: 'utf8', timeout: 60000 });
  if (r.status !== 0) return [...modules];
  try {
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '[]');
  } catch {
    return [...modules];
  }
}

const MARKER = '.atelier-ready';

/** The venv's interpreter when it is complete for the current lock, else null. Cheap: reads a marker file. */
export function readyPython(opts: Pick<ProvisionOptions, 'runtimeDir' | 'cacheRoot'>): string | null {
  const dir = venvDir(opts);
  try {
    const marker = JSON.parse(fs.readFileSync(path.join(dir, MARKER), 'utf8'));
    if (marker.lock === lockHash(opts.runtimeDir) && fs.existsSync(venvPython(dir))) return venvPython(dir);
  } catch {
    /* not provisioned */
  }
  return null;
}

function run(cmd: string, args: string[], onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: childEnv({ PIP_DISABLE_PIP_VERSION_CHECK: '1' }) });
    const tail: string[] = [];
    const feed = (chunk: Buffer) => {
      for (const line of chunk.toString('utf8').split(/\r?\n|\r/)) {
        if (!line.trim()) continue;
        tail.push(line);
        if (tail.length > 30) tail.shift();
        onLine(line);
      }
    };
    child.stdout.on('data', feed);
    child.stderr.on('data', feed);
    child.on('error', (err) => reject(new AtelierError('RUNTIME_UNAVAILABLE', `Could not run ${cmd}: ${err.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve();
      else {
        const text = tail.join('\n');
        const full = /No space left on device/i.test(text);
        reject(
          new AtelierError(
            full ? 'DISK_FULL' : 'RUNTIME_UNAVAILABLE',
            full
              ? 'The disk filled up while installing the Python runtime. Free some space and run the setup again (it resumes from the package cache).'
              : `Installing the Python runtime failed (${path.basename(cmd)} ${args.slice(0, 3).join(' ')} exited with ${code}).`,
            text,
          ),
        );
      }
    });
  });
}

/**
 * Make sure the venv for the current lock exists and imports; returns its interpreter.
 * Progress is coarse but honest: phases, with uv's "Prepared/Installed N packages" lines moving the bar.
 */
export async function provision(opts: ProvisionOptions): Promise<string> {
  const report = opts.onProgress ?? (() => {});
  const log = opts.log ?? (() => {});
  const dir = venvDir(opts);
  const py = venvPython(dir);
  if (!opts.repair) {
    const ready = readyPython(opts);
    if (ready) {
      report({ phase: 'Checking the Python runtime', fraction: 0.5 });
      if (missingModules(ready, opts.requiredModules).length === 0) {
        report({ phase: 'Python runtime ready', fraction: 1 });
        return ready;
      }
      log(`provision: ${dir} is marked ready but does not import; rebuilding`);
    }
  }
  report({ phase: 'Finding Python', fraction: 0.02 });
  const base = findBasePython(opts.basePython || undefined);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  report({ phase: 'Creating the virtual environment', fraction: 0.05 });
  await run(base, ['-m', 'venv', dir], log);
  report({ phase: 'Installing the package installer (uv)', fraction: 0.1 });
  let haveUv = true;
  try {
    await run(py, ['-m', 'pip', 'install', '--quiet', 'uv'], log);
  } catch (err) {
    haveUv = false;
    log(`provision: uv unavailable, falling back to pip: ${(err as Error).message}`);
  }
  const lock = path.join(opts.runtimeDir, 'requirements.lock');
  const total = fs.readFileSync(lock, 'utf8').split('\n').filter((l) => /^[A-Za-z0-9]/.test(l)).length || 1;
  report({ phase: `Downloading and installing ${total} packages`, fraction: 0.15 });
  const onLine = (line: string) => {
    log(line);
    const m = /(Prepared|Installed|Collecting|Downloaded)\s+(\d+)?/.exec(line);
    if (!m) return;
    if (m[1] === 'Prepared') report({ phase: 'Installing packages', fraction: 0.8 });
    else if (m[1] === 'Installed') report({ phase: 'Finishing', fraction: 0.95 });
  };
  if (haveUv) await run(py, ['-m', 'uv', 'pip', 'install', '--python', py, '-r', lock], onLine);
  else await run(py, ['-m', 'pip', 'install', '-r', lock], onLine);
  report({ phase: 'Checking the installation', fraction: 0.97 });
  const missing = missingModules(py, opts.requiredModules);
  if (missing.length) throw new AtelierError('RUNTIME_UNAVAILABLE', `The Python runtime installed but cannot import ${missing.join(', ')}. Try Repair.`);
  writeFileAtomic(path.join(dir, MARKER), JSON.stringify({ lock: lockHash(opts.runtimeDir), python: base, at: new Date().toISOString() }));
  report({ phase: 'Python runtime ready', fraction: 1 });
  return py;
}
