import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { createServices, type Services } from '../../src/main/services';
import { memoryBackend } from '../../src/main/services/settings/settings';
import os from 'node:os';
import { MAX_FRAME_BYTES, MIN_TOKEN_LENGTH, startWebServer, type WebServer } from '../../src/main/web/server';
import { makePng, tmpDir } from '../helpers';

const TOKEN = 'unit-test-token-0123456789';
let services: Services;
let server: WebServer;
let imagePath: string;

beforeAll(async () => {
  services = createServices({
    dataDir: tmpDir(),
    appRoot: path.resolve(__dirname, '../..'),
    settingsBackend: memoryBackend(),
    shell: 'web',
    version: 'test',
    cacheRoot: tmpDir(),
    log: () => {},
  });
  const rendererDir = tmpDir();
  fs.writeFileSync(path.join(rendererDir, 'index.html'), '<!doctype html><title>Atelier</title>');
  server = await startWebServer({ services, rendererDir, token: TOKEN, port: 0 });
  const g = services.history.addGeneration({
    backend: 'local', mode: 'txt2img', prompt: 'p', negativePrompt: '', modelId: null, modelName: 'm', modelHash: null, sampler: 'Euler',
    steps: 1, cfg: 1, seed: 1, width: 8, height: 8, batch: 1, strength: null, control: null, loras: [], device: null, timings: {}, costUsd: null,
    params: {}, images: [{ data: makePng(8, 8), seed: 1 }],
  });
  imagePath = g.images[0].path;
});
afterAll(async () => {
  await server?.close();
  await services?.dispose();
});

function get(pathname: string, headers: Record<string, string> = {}): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: server.port, path: pathname, headers: { Host: `127.0.0.1:${server.port}`, ...headers } }, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const cookie = `atelier_token=${TOKEN}`;

function connect(headers: Record<string, string> = {}, query = ''): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${server.port}/ws${query}`, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });
}

function call(ws: WebSocket, frame: unknown): Promise<any> {
  return new Promise((resolve) => {
    const onMsg = (d: WebSocket.RawData) => {
      const msg = JSON.parse(d.toString());
      if (msg.t === 'reply') {
        ws.off('message', onMsg);
        resolve(msg);
      }
    };
    ws.on('message', onMsg);
    ws.send(typeof frame === 'string' ? frame : JSON.stringify(frame));
  });
}

describe('web mode server', () => {
  it('listens on loopback only by default', () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=/);
  });

  it('refuses requests without the token, or with a wrong one', async () => {
    expect((await get('/')).status).toBe(401);
    expect((await get('/?token=wrong')).status).toBe(401);
    expect((await get('/', { Cookie: 'atelier_token=wrong' })).status).toBe(401);
    expect((await get(`/files/${imagePath}`)).status).toBe(401);
  });

  it('refuses a foreign Host header (DNS rebinding) even with the token', async () => {
    const r = await get(`/?token=${TOKEN}`, { Host: `evil.example:${server.port}` });
    expect(r.status).toBe(421);
    expect((await get('/', { Host: 'localhost:1', Cookie: cookie })).status).toBe(421);
  });

  it('trades the token in the address for an HttpOnly SameSite cookie and drops it from the URL', async () => {
    const r = await get(`/?token=${TOKEN}`);
    expect(r.status).toBe(303);
    expect(r.headers.location).toBe('/');
    expect(r.headers['set-cookie']?.[0]).toMatch(/HttpOnly; SameSite=Strict/);
    const page = await get('/', { Cookie: cookie });
    expect(page.status).toBe(200);
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.headers['content-security-policy']).not.toContain('unsafe');
    expect(page.headers['x-frame-options']).toBe('DENY');
  });

  it('serves library images and refuses paths that leave the library', async () => {
    const ok = await get(`/files/${imagePath}`, { Cookie: cookie });
    expect(ok.status).toBe(200);
    expect(ok.headers['content-type']).toBe('image/png');
    for (const bad of ['/files/../atelier.db', '/files/%2e%2e/atelier.db', '/files/images%2f..%2f..%2fatelier.db', '/files//etc/passwd', '/files/atelier.db%00.png']) {
      expect((await get(bad, { Cookie: cookie })).status, bad).toBe(404);
    }
  });

  it('refuses WebSocket upgrades without the token or from a foreign Origin', async () => {
    await expect(connect()).rejects.toThrow('HTTP 401');
    await expect(connect({ Cookie: cookie, Origin: 'http://evil.example' })).rejects.toThrow('HTTP 403');
    await expect(connect({ Cookie: cookie, Origin: `http://127.0.0.1:${server.port + 1}` })).rejects.toThrow('HTTP 403');
    await expect(connect({ Cookie: cookie, Host: 'evil.example' })).rejects.toThrow('HTTP 421');
    const ws = await connect({ Cookie: cookie, Origin: `http://127.0.0.1:${server.port}` });
    ws.close();
  });

  it('serves the contract over the socket and answers malformed frames with BAD_REQUEST', async () => {
    const ws = await connect({ Cookie: cookie });
    expect(await call(ws, { t: 'call', id: 1, method: 'app.info', input: {} })).toMatchObject({ id: 1, ok: true, value: { shell: 'web', version: 'test' } });
    expect(await call(ws, { t: 'call', id: 2, method: 'history.list', input: { limit: 'lots' } })).toMatchObject({ id: 2, ok: false, error: { code: 'BAD_REQUEST' } });
    expect(await call(ws, 'not json {')).toMatchObject({ id: null, ok: false, error: { code: 'BAD_REQUEST' } });
    expect(await call(ws, { t: 'call', id: 'x' })).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    expect(await call(ws, { t: 'call', id: 3, method: 'history.list', input: {} })).toMatchObject({ id: 3, ok: true, value: { total: 1 } });
    ws.close();
  });

  it('closes the socket on an oversized frame', async () => {
    const ws = await connect({ Cookie: cookie });
    const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
    ws.send('x'.repeat(MAX_FRAME_BYTES + 1));
    expect(await closed).toBe(1009);
  });

  it('pushes contract events to connected clients', async () => {
    const ws = await connect({ Cookie: cookie });
    const event = new Promise<any>((resolve) => ws.on('message', (d) => resolve(JSON.parse(d.toString()))));
    services.hub.emit('history.added', { generationId: 'g-1' });
    expect(await event).toEqual({ t: 'event', name: 'history.added', payload: { generationId: 'g-1' } });
    ws.close();
  });
});

describe('web mode: hostile frames and exposure beyond loopback', () => {
  let refused = 0;
  afterAll(() => console.log(`web: ${refused} hostile frames or requests refused, each with a specific answer; the server kept serving`));

  it('answers every malformed or hostile frame with BAD_REQUEST and keeps serving', async () => {
    const ws = await connect({ Cookie: cookie });
    const hostile: unknown[] = [
      '',
      'null',
      '[]',
      '"call"',
      '{"t":"call"}',
      '{"t":"call","id":1}',
      '{"t":"reply","id":1,"method":"app.info","input":{}}',
      ...['__proto__', 'constructor', 'toString', 'hasOwnProperty', 'prototype', 'app.info.constructor', '../history.list', 'history.list\u0000', 'HISTORY.LIST', ''].map(
        (method, i) => `{"t":"call","id":${100 + i},"method":${JSON.stringify(method)},"input":{}}`,
      ),
      { t: 'call', id: 200, method: ['history.list'], input: {} },
      { t: 'call', id: 201, method: { toString: 'history.list' }, input: {} },
      { t: 'call', id: 202, method: 42, input: {} },
      { t: 'call', id: 203, method: 'history.list', input: { __proto__: { admin: true }, limit: 1e308 } },
      { t: 'call', id: 204, method: 'history.list', input: JSON.parse('{"constructor":{"prototype":{"polluted":1}}}') },
      '{"t":"call","id":205,"method":"history.list","input":' + '['.repeat(5000) + ']'.repeat(5000) + '}',
      '{"t":"call","id":206,"method":"settings.update","input":{"modelDirs":"/"}}',
    ];
    for (const frame of hostile) {
      const reply = await call(ws, frame);
      expect(reply, JSON.stringify(frame).slice(0, 80)).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
      expect(reply.error.message.length).toBeGreaterThan(10);
      refused++;
    }
    // A binary frame is refused the same way.
    const binary = new Promise<any>((resolve) => ws.once('message', (d) => resolve(JSON.parse(d.toString()))));
    ws.send(Buffer.from([0, 1, 2, 3]), { binary: true });
    expect(await binary).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    refused++;
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(({} as Record<string, unknown>).admin).toBeUndefined();
    expect(await call(ws, { t: 'call', id: 999, method: 'app.info', input: {} })).toMatchObject({ id: 999, ok: true });
    ws.close();
  });

  it('refuses to start without a real token', async () => {
    for (const token of ['', 'short', 'x'.repeat(MIN_TOKEN_LENGTH - 1)]) {
      await expect(startWebServer({ services, rendererDir: tmpDir(), token, port: 0 })).rejects.toThrow(/at least 16 characters/);
      refused++;
    }
  });

  it('beyond loopback only when asked, and then still only with the token', async () => {
    const rendererDir = tmpDir();
    fs.writeFileSync(path.join(rendererDir, 'index.html'), '<!doctype html><title>Atelier</title>');
    const wide = await startWebServer({ services, rendererDir, token: TOKEN, host: '0.0.0.0', port: 0 });
    try {
      const lan = Object.values(os.networkInterfaces()).flat().find((a) => a && a.family === 'IPv4' && !a.internal)?.address ?? '127.0.0.1';
      const req = (host: string, headers: Record<string, string>) =>
        new Promise<number>((resolve, reject) => {
          const r = http.request({ host: lan, port: wide.port, path: '/', headers: { Host: `${host}:${wide.port}`, ...headers } }, (res) => {
            res.resume();
            resolve(res.statusCode!);
          });
          r.on('error', reject);
          r.end();
        });
      expect(await req(lan, {})).toBe(401); // reachable, but locked
      expect(await req(lan, { Cookie: 'atelier_token=wrong-token-0123456789' })).toBe(401);
      expect(await req('evil.example', { Cookie: cookie })).toBe(421); // DNS rebinding: names are never accepted
      expect(await req(lan, { Cookie: cookie })).toBe(200); // this machine's own address, with the token
      refused += 3;
    } finally {
      await wide.close();
    }
  });
});

