// `npm start`: the desktop app where Electron's binary exists, else the web mode (said plainly).
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';

execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
let electronBin = null;
try {
  if (fs.existsSync('node_modules/electron/path.txt')) electronBin = (await import('electron')).default;
} catch {
  electronBin = null;
}
const child = electronBin
  ? spawn(electronBin, ['.'], { stdio: 'inherit' })
  : (console.log('Electron\'s binary is not installed here (it could not be downloaded), so Atelier starts in web mode.\n'),
    spawn(process.execPath, ['dist/main/web.cjs', ...process.argv.slice(2)], { stdio: 'inherit' }));
child.on('exit', (code) => process.exit(code ?? 0));
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => child.kill(sig));
