// `npm test`: type-check, Electron security scan (Electronegativity), unit and integration tests (vitest, real SQLite and the real Python worker),
// the worker's own tests (pytest), and end-to-end tests in Chromium (Playwright). Runs them all, then fails if any failed.
import { spawnSync } from 'node:child_process';

const py = spawnSync(process.execPath, ['dist/main/setup.cjs', '--print-python'], { encoding: 'utf8' });
const python = py.status === 0 ? py.stdout.trim() : null;
const suites = [
  ['build', process.execPath, ['scripts/build.mjs']],
  ['typecheck', process.execPath, ['node_modules/typescript/bin/tsc', '-b']],
  ['electronegativity', process.execPath, ['scripts/electronegativity.mjs']],
  ['vitest', process.execPath, ['node_modules/vitest/vitest.mjs', 'run']],
  ['pytest', python ?? 'python-runtime-not-provisioned', ['-m', 'pytest', '-q', 'python-runtime/tests', '-p', 'no:cacheprovider']],
  ['playwright', process.execPath, ['node_modules/@playwright/test/cli.js', 'test']],
];
const only = process.argv.slice(2);
const results = [];
for (const [name, cmd, args] of suites) {
  if (only.length && !only.includes(name)) continue;
  console.log(`\n===== ${name}`);
  if (name === 'pytest' && !python) {
    console.error('The Python runtime is not provisioned: run `npm run setup` first.');
    results.push([name, false]);
    continue;
  }
  const r = spawnSync(cmd, args, { stdio: 'inherit', env: { ...process.env, ...(python ? { ATELIER_PYTHON: python } : {}) } });
  results.push([name, r.status === 0]);
  if (name === 'build' && r.status !== 0) break;
}
const failed = results.filter(([, ok]) => !ok).map(([n]) => n);
console.log(`\n===== summary: ${results.map(([n, ok]) => `${n} ${ok ? 'ok' : 'FAILED'}`).join(', ')}`);
console.log(`suites: ${results.length - failed.length} passed, ${failed.length} failed`);
process.exit(failed.length ? 1 : 0);
