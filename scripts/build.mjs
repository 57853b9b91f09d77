// Builds the renderer (vite) and the Node side (esbuild). --main-only skips the renderer.
import { execFileSync } from 'node:child_process';

const run = (cmd, args) => execFileSync(cmd, args, { stdio: 'inherit' });
if (!process.argv.includes('--main-only')) run(process.execPath, ['node_modules/vite/bin/vite.js', 'build', '--logLevel', 'warn']);
run(process.execPath, ['scripts/build-main.mjs', '--quiet']);
