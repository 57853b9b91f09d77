/**
 * Cloud mode through the app's services and the real `openai` SDK, against an OpenAI-compatible
 * server written in the tests (tests/fake-openai.ts): request bodies and headers, retries that
 * honour retry-after, the message for each failure, stored costs and the budget, canvas edits with
 * OpenAI's mask convention, and the key never written anywhere.
 */
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { GenerateParams, type GenerateParamsInput, type Job } from '../../src/shared/contract';
import { createServices, type Services } from '../../src/main/services';
import { encryptedFileKeyStore, envKeyStore, type Encryptor } from '../../src/main/services/cloud/keystore';
import { memoryBackend } from '../../src/main/services/settings/settings';
import { readPngText } from '../../src/main/lib/pngchunks';
import { rgbaPng } from '../../src/main/lib/png';
import { decodePngPixels } from '../../src/main/lib/thumbnail';
import { FakeOpenAI } from '../fake-openai';
import { tmpDir } from '../helpers';

const ROOT = path.resolve(__dirname, '..', '..');
const KEY = 'sk-test-Atelier0123456789abcdefSECRETKEY';
const fake = new FakeOpenAI();
const logs: string[] = [];
const events: Job[] = [];
let services: Services;
let dataDir: string;

beforeAll(async () => {
  await fake.start();
  dataDir = tmpDir('atelier-cloud-');
  services = createServices({
    dataDir,
    appRoot: ROOT,
    settingsBackend: memoryBackend({}),
    shell: 'web',
    version: 'test',
    log: (l) => logs.push(l),
    keyStore: envKeyStore({ OPENAI_API_KEY: KEY }),
    openaiBaseURL: fake.url,
    cloud: { timeoutMs: 1500, maxWaitMs: 5000 },
  });
  services.hub.subscribe((name, payload) => {
    if (name === 'jobs.changed') events.push(payload as Job);
  });
});
afterEach(() => {
  fake.reset();
  events.length = 0;
  services.settings.update({ cloudBudgetUsd: 0, blockedTerms: [], styleSuffix: '' });
});
afterAll(async () => {
  await services?.dispose();
  await fake.close();
});

const cloud = (extra: Partial<GenerateParamsInput> & { cloud?: Partial<GenerateParamsInput['cloud']> } = {}) =>
  GenerateParams.parse({ backend: 'cloud', modelId: 'gpt-image-1', prompt: 'a lighthouse at dusk', seed: 0, ...extra, cloud: { size: '1024x1024', ...extra.cloud } });

async function run(p: GenerateParams): Promise<Job> {
  const job = services.jobs.submit(p);
  await services.jobs.whenIdle();
  const done = services.jobs.list().find((j) => j.id === job.id)!;
  if (done.error && process.env.DEBUG_CLOUD) console.log(done.error);
  return done;
}

function imagesOnDisk(): string[] {
  const dir = path.join(dataDir, 'images');
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(path.join(d, e.name));
      else out.push(path.join(d, e.name));
    }
  };
  if (fs.existsSync(dir)) walk(dir);
  return out;
}

describe('cloud generation', () => {
  it('sends what the model takes, with the key as a bearer token, and stores the images with their cost', async () => {
    const job = await run(cloud({ batch: 2, cloud: { size: '1024x1536', quality: 'high' } }));
    expect(job.state).toBe('done');
    const [req] = fake.imageRequests;
    expect(req.path).toBe('/v1/images/generations');
    expect(req.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(req.json).toEqual({ model: 'gpt-image-1', prompt: 'a lighthouse at dusk', n: 2, size: '1024x1536', quality: 'high' }); // no response_format, no style
    const g = services.history.get(job.generationId!);
    expect(g).toMatchObject({ backend: 'cloud', modelName: 'gpt-image-1', width: 1024, height: 1536, batch: 2, costUsd: 0.5, revisedPrompt: null });
    expect(g.images).toHaveLength(2);
    const file = path.join(dataDir, g.images[0].path);
    const png = fs.readFileSync(file);
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([1024, 1536]);
    const text = readPngText(png);
    expect(text.parameters).toBe('a lighthouse at dusk\nSize: 1024x1536, Backend: OpenAI, Model: gpt-image-1, Version: Atelier');
    expect(services.cloud.status().spentThisMonthUsd).toBe(0.5);
  });

  it('DALL·E 3: style and base64 asked for, the revised prompt stored', async () => {
    const job = await run(cloud({ modelId: 'dall-e-3', cloud: { size: '1792x1024', quality: 'hd', style: 'natural' } }));
    expect(job.state).toBe('done');
    expect(fake.imageRequests[0].json).toEqual({ model: 'dall-e-3', prompt: 'a lighthouse at dusk', n: 1, size: '1792x1024', quality: 'hd', response_format: 'b64_json', style: 'natural' });
    const g = services.history.get(job.generationId!);
    expect(g.revisedPrompt).toBe('A detailed rendering of a lighthouse at dusk');
    expect(g.costUsd).toBe(0.12);
  });

  it('refuses options the model does not take, before any request', () => {
    expect(() => cloud({ modelId: 'dall-e-3', batch: 2 })).toThrow(/at most 1 for DALL·E 3/);
    expect(() => cloud({ modelId: 'dall-e-2', cloud: { size: '1024x1024', quality: 'hd' } })).toThrow(/not an option of DALL·E 2/);
    expect(() => cloud({ cloud: { size: '1792x1024' } })).toThrow(/must be one of 1024x1024, 1536x1024, 1024x1536, auto/);
    expect(() => cloud({ modelId: 'dall-e-3', mode: 'inpaint' })).toThrow(/cannot edit images/);
    expect(() => cloud({ modelId: 'midjourney' })).toThrow(/not an OpenAI image model/);
    expect(fake.imageRequests).toHaveLength(0);
  });

  it('waits out a 429 as retry-after says, telling the user, then succeeds', async () => {
    fake.script.push({ status: 429, headers: { 'retry-after': '1' }, body: { error: { message: 'Rate limit reached for images', type: 'requests', code: 'rate_limit_exceeded' } } });
    const t0 = Date.now();
    const job = await run(cloud());
    expect(job.state).toBe('done');
    expect(fake.imageRequests).toHaveLength(2);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(events.some((e) => e.note?.startsWith('Rate limited by OpenAI: trying again in 1 s (attempt 2 of 4)'))).toBe(true);
    expect(events.at(-1)!.note).toBeNull();
  });

  it('gives each failure its own message and saves nothing', async () => {
    const before = imagesOnDisk().length;
    const cases: { script: FakeOpenAI['script']; code: string; message: RegExp; requests: number }[] = [
      { script: [{ status: 401, body: { error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } } }], code: 'CLOUD_AUTH', message: /refused the API key \(401\)/, requests: 1 },
      {
        script: [{ status: 400, body: { error: { message: 'Your request was rejected as a result of our safety system.', type: 'image_generation_user_error', code: 'content_policy_violation' } } }],
        code: 'CLOUD_REFUSED',
        message: /declined this prompt under its content policy: Your request was rejected/,
        requests: 1,
      },
      { script: Array.from({ length: 4 }, () => ({ status: 500, headers: { 'retry-after-ms': '20' } })), code: 'CLOUD_UNAVAILABLE', message: /servers failed \(500\) even after retrying/, requests: 4 },
      { script: [{ status: 429, body: { error: { message: 'You exceeded your current quota', type: 'insufficient_quota', code: 'insufficient_quota' } } }], code: 'CLOUD_RATE_LIMITED', message: /out of credit/, requests: 1 },
      { script: [{ status: 429, headers: { 'retry-after': '600' } }], code: 'CLOUD_RATE_LIMITED', message: /Rate limited by OpenAI \(429\)/, requests: 1 },
      { script: [{ hang: true }], code: 'CLOUD_UNAVAILABLE', message: /did not answer in time/, requests: 1 },
      { script: [{ status: 404, body: { error: { message: 'The model `dall-e-2` does not exist', type: 'invalid_request_error', code: 'model_not_found' } } }], code: 'CLOUD_REFUSED', message: /not available to this key/, requests: 1 },
    ];
    for (const c of cases) {
      fake.reset();
      fake.script.push(...c.script);
      const job = await run(cloud());
      expect(job.state, c.code).toBe('failed');
      expect(job.error?.code).toBe(c.code);
      expect(job.error?.message).toMatch(c.message);
      expect(fake.imageRequests).toHaveLength(c.requests);
    }
    expect(imagesOnDisk().length).toBe(before);
  });

  it('says when there is no network', async () => {
    const offline = createServices({
      dataDir: tmpDir('atelier-cloud-offline-'),
      appRoot: ROOT,
      settingsBackend: memoryBackend({}),
      shell: 'web',
      version: 'test',
      log: () => {},
      keyStore: envKeyStore({ OPENAI_API_KEY: KEY }),
      openaiBaseURL: 'http://127.0.0.1:9/v1', // discard port: connection refused
      cloud: { maxAttempts: 2 },
    });
    const job = offline.jobs.submit(cloud());
    await offline.jobs.whenIdle();
    const done = offline.jobs.list().find((j) => j.id === job.id)!;
    expect(done.error).toMatchObject({ code: 'CLOUD_UNAVAILABLE', message: expect.stringMatching(/Could not reach the OpenAI API/) });
    await offline.dispose();
  });

  it('cancels while it waits to retry', async () => {
    fake.script.push({ status: 429, headers: { 'retry-after': '4' } });
    const job = services.jobs.submit(cloud());
    await new Promise((r) => setTimeout(r, 300));
    expect(await services.jobs.cancel(job.id)).toBe(true);
    await services.jobs.whenIdle();
    expect(services.jobs.list().find((j) => j.id === job.id)!.state).toBe('cancelled');
    expect(fake.imageRequests).toHaveLength(1);
  });

  it('keeps to the monthly budget unless the user confirms', async () => {
    services.settings.update({ cloudBudgetUsd: 0.6 + services.cloud.status().spentThisMonthUsd });
    const est = services.cloud.estimate('gpt-image-1', '1536x1024', 'high', 3);
    expect(est).toMatchObject({ costUsd: 0.75, overBudget: true });
    expect(() => services.jobs.submit(cloud({ batch: 3, cloud: { size: '1536x1024', quality: 'high' } }))).toThrow(/past your budget/);
    expect(fake.imageRequests).toHaveLength(0);
    const job = await run(cloud({ batch: 3, cloud: { size: '1536x1024', quality: 'high', overBudgetOk: true } }));
    expect(job.state).toBe('done');
    const g = services.history.get(job.generationId!);
    expect(g.costUsd).toBe(0.75);
    // The confirmation is not part of what a re-run sends.
    const stored = JSON.parse(readPngText(fs.readFileSync(path.join(dataDir, g.images[0].path)))['atelier']).request;
    expect(stored.cloud.overBudgetOk).toBeUndefined();
  });

  it('edits the canvas frame with OpenAI’s mask: transparent where Atelier’s mask is white', async () => {
    // A 64×64 composite, its left 16 columns empty (transparent), and a mask over the centre.
    const rgba = Buffer.alloc(64 * 64 * 4);
    for (let i = 0; i < 64 * 64; i++) rgba.set(i % 64 < 16 ? [0, 0, 0, 0] : [30, 90, 200, 255], i * 4);
    const init = services.history.putAsset(rgbaPng(64, 64, rgba)).path;
    const m = Buffer.alloc(64 * 64 * 4);
    for (let i = 0; i < 64 * 64; i++) {
      const x = i % 64;
      const y = Math.floor(i / 64);
      const white = x >= 24 && x < 40 && y >= 24 && y < 40;
      m.set(white ? [255, 255, 255, 255] : [0, 0, 0, 255], i * 4);
    }
    const mask = services.history.putAsset(rgbaPng(64, 64, m)).path;
    const job = await run(cloud({ mode: 'inpaint', canvas: { frame: { x: 0, y: 0, width: 64, height: 64 }, init, mask } }));
    expect(job.state).toBe('done');
    const req = fake.imageRequests[0];
    expect(req.path).toBe('/v1/images/edits');
    expect(req.fields).toMatchObject({ model: 'gpt-image-1', prompt: 'a lighthouse at dusk', n: '1', size: '1024x1024' });
    expect(req.files.image.type).toBe('image/png');
    const sent = decodePngPixels(req.files.mask.data)!;
    expect([sent.width, sent.height, sent.channels]).toEqual([64, 64, 4]);
    const alphaAt = (x: number, y: number) => sent.px[(y * 64 + x) * 4 + 3];
    expect([alphaAt(30, 30), alphaAt(5, 5), alphaAt(50, 50), alphaAt(50, 10)]).toEqual([0, 0, 255, 255]);
    const g = services.history.get(job.generationId!);
    expect(g.mode).toBe('inpaint');
    expect((g.control as { canvas: { mask: string } }).canvas.mask).toBe(mask);
  });

  it('refuses blocked terms and appends the style suffix, for both backends', async () => {
    services.settings.update({ blockedTerms: ['gore'], styleSuffix: 'matte painting' });
    expect(() => services.jobs.submit(cloud({ prompt: 'a g0re scene' }))).toThrow(/blocked on this machine \(gore\)/);
    const job = await run(cloud({ prompt: 'a quiet harbour' }));
    expect(fake.imageRequests[0].json!.prompt).toBe('a quiet harbour, matte painting');
    expect(services.history.get(job.generationId!).prompt).toBe('a quiet harbour, matte painting');
  });

  it('never writes the key: not in the database, images, their metadata, settings, logs, exports or what the UI receives', async () => {
    // Exported workflows and a board export, written where a user would put them.
    const gens = services.history.list({ limit: 200 }).items;
    expect(gens.length).toBeGreaterThan(0);
    const exports: string[] = [];
    for (const g of gens) for (const format of ['comfyui', 'json', 'a1111'] as const) {
      const r = await services.dispatch('history.export', { id: g.id, format });
      expect(r.ok).toBe(true);
      exports.push((r as { value: { text: string } }).value.text);
    }
    const board = await services.dispatch('boards.create', { name: 'key check' });
    const boardId = (board as { value: { id: string } }).value.id;
    await services.dispatch('boards.add', { id: boardId, generationIds: gens.map((g) => g.id) });
    const exportDir = tmpDir('atelier-cloud-export-');
    expect((await services.dispatch('boards.export', { id: boardId, folder: exportDir })).ok).toBe(true);

    let files = 0;
    let pngTexts = 0;
    const found: string[] = [];
    const walk = (d: string) => {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) {
        const f = path.join(d, e.name);
        if (e.isDirectory()) walk(f);
        else {
          files++;
          const bytes = fs.readFileSync(f);
          if (bytes.includes(KEY) || bytes.includes(KEY.slice(3, -4))) found.push(f);
          if (f.endsWith('.png')) {
            // Text chunks may be compressed (zTXt/iTXt): read them decoded too.
            const text = JSON.stringify(readPngText(bytes));
            pngTexts++;
            if (text.includes(KEY.slice(3, -4))) found.push(`${f} (metadata)`);
          }
        }
      }
    };
    walk(dataDir);
    walk(exportDir);
    expect(files).toBeGreaterThan(3);
    expect(pngTexts).toBeGreaterThan(0);
    expect(found).toEqual([]);
    for (const text of exports) expect(text).not.toContain(KEY.slice(3, -4));
    expect(logs.join('\n')).not.toContain(KEY.slice(3, -4));
    // Everything the UI was sent: job events (errors included) and the cloud status.
    expect(JSON.stringify(events)).not.toContain(KEY.slice(3, -4));
    expect(JSON.stringify(services.jobs.list())).not.toContain(KEY.slice(3, -4));
    expect(JSON.stringify(services.cloud.status())).not.toContain(KEY.slice(0, -4));
    expect(services.cloud.status()).toMatchObject({ hasKey: true, keySource: 'env', canStoreKey: false, keyHint: '…TKEY' });
    console.log(`secrets: ${files} files (${pngTexts} PNGs' metadata decoded), ${exports.length} exported workflows, ${logs.length} log lines and every job the UI saw searched for the key: ${found.length} contain it`);
  });

  it('without a key, says where to put one', async () => {
    const keyless = createServices({ dataDir: tmpDir('atelier-cloud-nokey-'), appRoot: ROOT, settingsBackend: memoryBackend({}), shell: 'web', version: 'test', log: () => {}, keyStore: envKeyStore({}), openaiBaseURL: fake.url });
    const job = keyless.jobs.submit(cloud());
    await keyless.jobs.whenIdle();
    expect(keyless.jobs.list().find((j) => j.id === job.id)!.error).toMatchObject({ code: 'CLOUD_AUTH', message: expect.stringMatching(/OPENAI_API_KEY/) });
    expect(fake.imageRequests).toHaveLength(0);
    await keyless.dispose();
  });
});

describe('the CLI', () => {
  const cli = (args: string[], env: Record<string, string>) =>
    new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      // Not spawnSync: the test server answers from this process's event loop.
      const p = spawn(process.execPath, ['dist/main/cli.cjs', 'generate', ...args], { cwd: ROOT, env: { ...process.env, ...env } });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d) => (stdout += d));
      p.stderr.on('data', (d) => (stderr += d));
      p.on('close', (code) => resolve({ code, stdout, stderr }));
    });

  it('generates with --cloud, the key from OPENAI_API_KEY, and says why it cannot', async () => {
    if (!fs.existsSync(path.join(ROOT, 'dist/main/cli.cjs'))) execFileSync(process.execPath, ['scripts/build-main.mjs', '--quiet'], { cwd: ROOT });
    const env = { ATELIER_DATA_DIR: tmpDir('atelier-cli-cloud-'), ATELIER_OPENAI_BASE_URL: fake.url, OPENAI_API_KEY: KEY };
    const ok = await cli(['--cloud', 'dall-e-3', '--prompt', 'a red kite over dunes', '--size', '1024x1792', '--style', 'vivid'], env);
    expect(ok.code, ok.stderr).toBe(0);
    const line = JSON.parse(ok.stdout.trim());
    expect(line).toMatchObject({ model: 'dall-e-3', costUsd: 0.08, revisedPrompt: 'A detailed rendering of a red kite over dunes' });
    const png = fs.readFileSync(line.path);
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([1024, 1792]);
    expect(fake.imageRequests[0].json).toMatchObject({ model: 'dall-e-3', size: '1024x1792', style: 'vivid' });
    expect(ok.stderr).not.toContain(KEY);

    const bad = await cli(['--cloud', 'dall-e-3', '--prompt', 'x', '--batch', '2'], env);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/BAD_REQUEST: batch: must be at most 1 for DALL·E 3/);
    const nokey = await cli(['--cloud', 'gpt-image-1', '--prompt', 'x'], { ...env, OPENAI_API_KEY: '' });
    expect(nokey.stderr).toMatch(/CLOUD_AUTH: No OpenAI API key: start Atelier with OPENAI_API_KEY/);
    expect(fake.imageRequests).toHaveLength(1);
  });
});

describe('the key store', () => {
  // Stands in for Electron's safeStorage (the OS keychain), which needs the Electron binary.
  const xor = (b: Buffer) => Buffer.from(b.map((v) => v ^ 0x5a));
  const keychain = (available = true): Encryptor => ({
    isEncryptionAvailable: () => available,
    encryptString: (s) => Buffer.concat([Buffer.from('v10'), xor(Buffer.from(s))]),
    decryptString: (b) => xor(b.subarray(3)).toString(),
  });

  it('keeps the key encrypted in a file of its own, readable only by the user', () => {
    const file = path.join(tmpDir(), 'secrets', 'openai-key.bin');
    const store = encryptedFileKeyStore(file, keychain(), {});
    expect(store.get()).toBeNull();
    store.set(KEY);
    expect(store.get()).toEqual({ key: KEY, source: 'keychain' });
    expect(fs.readFileSync(file).includes(KEY)).toBe(false);
    if (process.platform !== 'win32') expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    store.clear();
    expect(fs.existsSync(file)).toBe(false);
  });

  it('falls back to OPENAI_API_KEY, and refuses to store in the clear without a keychain', () => {
    const file = path.join(tmpDir(), 'k.bin');
    const store = encryptedFileKeyStore(file, keychain(false), { OPENAI_API_KEY: 'sk-from-env-000000000000' });
    expect(store.get()).toEqual({ key: 'sk-from-env-000000000000', source: 'env' });
    expect(() => store.set(KEY)).toThrow(/keychain is not available/);
    expect(fs.existsSync(file)).toBe(false);
    expect(() => envKeyStore({}).set(KEY)).toThrow(/OPENAI_API_KEY/);
  });
});
