// `npm run setup`: everything Atelier needs on a fresh machine, idempotent.
//  1. npm packages (Electron's binary is optional: fetched where the network allows, else web mode)
//  2. the build
//  3. the Python runtime (a venv from python-runtime/requirements.lock in a cache outside the clone)
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const step = (title) => console.log(`\n== ${title}`);
const run = (cmd, args, env = {}) => execFileSync(cmd, args, { stdio: 'inherit', env: { ...process.env, ...env } });

step('npm packages');
const lock = fs.readFileSync('package-lock.json', 'utf8');
const stamp = 'node_modules/.atelier-lock';
if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === lock) console.log('up to date');
else {
  run(npm, ['ci', '--no-audit', '--no-fund'], { ELECTRON_SKIP_BINARY_DOWNLOAD: '1' });
  fs.writeFileSync(stamp, lock);
}

step('Electron binary (optional)');
if (fs.existsSync('node_modules/electron/path.txt')) console.log('present');
else if (process.env.ATELIER_SKIP_ELECTRON === '1') console.log('skipped (ATELIER_SKIP_ELECTRON=1): `npm start` will use the web mode');
else {
  const r = spawnSync(process.execPath, ['node_modules/electron/install.js'], { stdio: 'pipe', timeout: 120000, encoding: 'utf8' });
  console.log(r.status === 0 ? 'downloaded' : 'not available on this machine (no download access): `npm start` will use the web mode');
}

step('build');
run(process.execPath, ['scripts/build.mjs']);

step('Python runtime');
run(process.execPath, ['dist/main/setup.cjs', ...(process.argv.includes('--repair') ? ['--repair'] : [])]);

if (!fs.existsSync(process.env.ATELIER_CHROMIUM ?? '/usr/bin/chromium')) {
  console.log('\nNote: the end-to-end tests drive Debian\'s Chromium: `sudo apt-get install chromium`.');
}
console.log('\nSetup complete. `npm test` runs every test; `npm start` starts Atelier.');
