/**
 * Starts the real web mode on a temp library whose model folder holds a tiny
 * random-weight SD pipeline built by the runtime's own test helper, so the
 * end-to-end tests generate real images through the real worker.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FakeOpenAI } from '../fake-openai';

const ROOT = path.resolve(__dirname, '..', '..');

export function runtimePython(): string {
  if (process.env.ATELIER_PYTHON) return process.env.ATELIER_PYTHON;
  return execFileSync(process.execPath, [path.join(ROOT, 'dist/main/setup.cjs'), '--print-python'], { encoding: 'utf8' }).trim();
}

export default async function globalSetup() {
  const python = runtimePython();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-e2e-'));
  const models = path.join(root, 'models');
  const data = path.join(root, 'data');
  fs.mkdirSync(data, { recursive: true });
  execFileSync(python, ['-m', 'atelier_runtime.testing.tiny', models, '--controlnet'], {
    cwd: path.join(ROOT, 'python-runtime'),
    env: { ...process.env, PYTHONPATH: path.join(ROOT, 'python-runtime') },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  // Only the diffusers folder goes in the library; the single file is covered by the worker's tests.
  for (const e of fs.readdirSync(models)) if (e.endsWith('.safetensors')) fs.rmSync(path.join(models, e));
  fs.writeFileSync(path.join(data, 'settings.json'), JSON.stringify({ modelDirs: [models], previewEvery: 1, defaults: { width: 64, height: 64, steps: 6 }, firstRunDone: true }));
  const token = 'e2e-token-' + Math.random().toString(36).slice(2);
  // Cloud mode talks to an OpenAI-compatible server of the tests'; the key comes from the environment as in any web mode.
  const openai = new FakeOpenAI();
  await openai.start();
  process.env.ATELIER_E2E_OPENAI = openai.url.replace(/\/v1$/, '');
  process.env.ATELIER_E2E_OPENAI_KEY = 'sk-e2e-' + Math.random().toString(36).slice(2) + 'KEYTAIL';
  const server = spawn(process.execPath, [path.join(ROOT, 'dist/main/web.cjs'), '--port', '0'], {
    env: {
      ...process.env,
      ATELIER_DATA_DIR: data,
      ATELIER_TOKEN: token,
      ATELIER_PYTHON: python,
      ATELIER_NO_AUTO_PROVISION: '1',
      ATELIER_OPENAI_BASE_URL: openai.url,
      OPENAI_API_KEY: process.env.ATELIER_E2E_OPENAI_KEY,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logFile = fs.createWriteStream(path.join(root, 'server.log'));
  server.stderr.pipe(logFile);
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      const m = /(http:\/\/127\.0\.0\.1:\d+\/\?token=\S+)/.exec(out);
      if (m) resolve(m[1]);
    });
    server.on('exit', (code) => reject(new Error(`web mode exited with ${code}; see ${root}/server.log`)));
    setTimeout(() => reject(new Error('web mode did not print its URL in 60 s')), 60000);
  });
  process.env.ATELIER_E2E_URL = url;
  process.env.ATELIER_E2E_ROOT = root;
  return async () => {
    server.kill('SIGTERM');
    await new Promise((r) => server.on('exit', r));
    await openai.close();
  };
}
