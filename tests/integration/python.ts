import path from 'node:path';
import { defaultCacheRoot, readyPython } from '../../src/main/services/runtime/provision';

export const ROOT = path.resolve(__dirname, '..', '..');
export const RUNTIME = path.join(ROOT, 'python-runtime');

/** The interpreter the integration tests run the real worker with: ATELIER_PYTHON (npm test sets it), else the provisioned venv. */
export function python(): string {
  const py = process.env.ATELIER_PYTHON || readyPython({ runtimeDir: RUNTIME, cacheRoot: defaultCacheRoot() });
  if (!py) throw new Error('The Python runtime is not provisioned: run `npm run setup` first.');
  return py;
}
