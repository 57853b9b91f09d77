/**
 * The OpenAI key and the web token stay in the app process: the Python worker (real, spawned as
 * the app spawns it) and the package installer get an environment without them, so no worker
 * traceback, crash dump or install log can carry them. The cloud suites (tests/integration/cloud.test.ts,
 * tests/e2e/cloud.spec.ts) search every file the app wrote for the key.
 */
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { childEnv, isSecretEnvName } from '../../src/main/lib/env';
import { python, RUNTIME } from './python';
import { WorkerProcess } from '../../src/main/services/runtime/worker';

const KEY = 'sk-proj-secret-for-the-env-test-0123456789abcdef';
const TOKEN = 'web-token-for-the-env-test-0123456789';
let worker: WorkerProcess | null = null;

afterAll(async () => {
  worker?.kill('test over');
});

describe('secrets never reach child processes', () => {
  it('names: the key, tokens, passwords and secret keys are secrets; the rest passes', () => {
    for (const n of ['OPENAI_API_KEY', 'OPENAI_ORG_ID', 'openai_api_key', 'ATELIER_TOKEN', 'HF_TOKEN', 'HUGGING_FACE_HUB_TOKEN', 'AWS_SECRET_ACCESS_KEY', 'DB_PASSWORD', 'ANTHROPIC_API_KEY', 'GITHUB_ACCESS_TOKEN']) {
      expect(isSecretEnvName(n), n).toBe(true);
    }
    for (const n of ['PATH', 'HOME', 'PYTHONPATH', 'CUDA_VISIBLE_DEVICES', 'ATELIER_PYTHON', 'ATELIER_TRAIN_THREADS', 'PIP_INDEX_URL', 'TOKENIZERS_PARALLELISM', 'KEYBOARD_LAYOUT']) {
      expect(isSecretEnvName(n), n).toBe(false);
    }
    const env = childEnv({ EXTRA: '1' }, { PATH: '/bin', OPENAI_API_KEY: KEY, ATELIER_TOKEN: TOKEN });
    expect(env).toEqual({ PATH: '/bin', EXTRA: '1' });
  });

  it.runIf(process.platform === 'linux')('the real worker’s environment holds neither the key nor the token', async () => {
    const saved = { key: process.env.OPENAI_API_KEY, token: process.env.ATELIER_TOKEN };
    process.env.OPENAI_API_KEY = KEY;
    process.env.ATELIER_TOKEN = TOKEN;
    try {
      worker = new WorkerProcess({ python: python(), runtimeDir: RUNTIME });
    } finally {
      if (saved.key === undefined) delete process.env.OPENAI_API_KEY;
      else process.env.OPENAI_API_KEY = saved.key;
      if (saved.token === undefined) delete process.env.ATELIER_TOKEN;
      else process.env.ATELIER_TOKEN = saved.token;
    }
    await worker.hello;
    const environ = fs.readFileSync(`/proc/${worker.pid}/environ`, 'utf8');
    expect(environ).toContain('HF_HUB_OFFLINE=1'); // it is the worker's environment we read
    expect(environ).not.toContain(KEY);
    expect(environ).not.toContain(TOKEN);
    expect(environ).not.toMatch(/OPENAI_API_KEY=/);
  });
});
