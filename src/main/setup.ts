/**
 * `npm run setup`'s Python step (the same provisioning code the app runs at first start):
 *   node dist/main/setup.cjs [--repair]      build or check the runtime venv, with progress
 *   node dist/main/setup.cjs --print-python  print the ready interpreter, exit 1 when not provisioned
 */
import path from 'node:path';
import { defaultCacheRoot, provision, readyPython, venvDir } from './services/runtime/provision';

async function main(): Promise<number> {
  const runtimeDir = path.resolve(__dirname, '..', '..', 'python-runtime');
  const cacheRoot = defaultCacheRoot();
  if (process.argv.includes('--print-python')) {
    const py = process.env.ATELIER_PYTHON || readyPython({ runtimeDir, cacheRoot });
    if (!py) {
      console.error('The Python runtime is not provisioned: run `npm run setup`.');
      return 1;
    }
    console.log(py);
    return 0;
  }
  console.log(`Python runtime: ${venvDir({ runtimeDir, cacheRoot })}`);
  let last = '';
  const started = Date.now();
  const py = await provision({
    runtimeDir,
    cacheRoot,
    repair: process.argv.includes('--repair'),
    onProgress: (p) => {
      const line = `  [${String(Math.round(p.fraction * 100)).padStart(3)}%] ${p.phase}`;
      if (line !== last) console.log(line);
      last = line;
    },
    log: process.env.ATELIER_VERBOSE ? (l) => console.log(`    ${l}`) : undefined,
  });
  console.log(`Python runtime ready in ${((Date.now() - started) / 1000).toFixed(0)} s: ${py}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`Setup failed: ${err?.message ?? err}`);
    if (err?.detail) console.error(err.detail);
    process.exit(1);
  },
);
