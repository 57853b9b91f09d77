// Bundles the Node side (Electron main, preload, web mode, CLI, bench) with esbuild into dist/main/*.cjs.
// Native better-sqlite3 and Electron stay external; ESM-only deps (conf, electron-store) are bundled to CJS.
import { build } from 'esbuild';
import fs from 'node:fs';

const pkg = JSON.parse(fs.readFileSync(new URL('../package.json', import.meta.url)));
const quiet = process.argv.includes('--quiet');
const common = {
  bundle: true,
  platform: 'node',
  format: 'cjs',
  target: 'node20',
  sourcemap: true,
  external: ['electron', 'better-sqlite3'],
  define: { __APP_VERSION__: JSON.stringify(pkg.version) },
  logLevel: quiet ? 'error' : 'info',
  // import.meta.url in bundled ESM deps becomes the CJS file's URL.
  banner: { js: "const __import_meta_url = require('url').pathToFileURL(__filename).href;" },
  inject: [],
};
const entries = {
  electron: 'src/main/electron/main.ts',
  web: 'src/main/web/main.ts',
  cli: 'src/main/cli.ts',
  setup: 'src/main/setup.ts',
  bench: 'tests/bench/bench.ts',
  'bench-history': 'tests/bench/history-bench.ts',
};
await Promise.all([
  ...Object.entries(entries)
    .filter(([, src]) => fs.existsSync(src))
    .map(([name, src]) => build({ ...common, entryPoints: [src], outfile: `dist/main/${name}.cjs`, define: { ...common.define, 'import.meta.url': '__import_meta_url' } })),
  build({ ...common, entryPoints: ['src/preload/index.ts'], outfile: 'dist/main/preload.cjs' }),
]);
