/**
 * Model downloads against a real HTTP server written here: ranges and If-Range, servers that
 * ignore ranges, drop the connection, lie about sizes, answer from the wrong offset, redirect like
 * Hugging Face with the LFS sha256 on the redirect, refuse (401/404/418), fail then recover (500),
 * stall, or serve something that is not a model. Everything is asserted on what the server saw
 * and what ended up on disk.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AtelierError } from '../../src/shared/errors';
import { DownloadsService, normalizeModelUrl, type Download, type DownloadsOptions } from '../../src/main/services/models/downloads';
import { tmpDir, waitFor } from '../helpers';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** A real safetensors file: one 3 MiB float16 tensor of random bytes (so any misplaced byte changes the hash). */
function makeModel(): Buffer {
  const n = 1024 * 1536 * 2;
  const header = Buffer.from(JSON.stringify({ __metadata__: { format: 'pt' }, 'model.diffusion_model.input_blocks.0.0.weight': { dtype: 'F16', shape: [1024, 1536], data_offsets: [0, n] } }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  return Buffer.concat([len, header, randomBytes(n)]);
}

const FILE = makeModel();
const FILE_SHA = sha(FILE);
const PICKLE = Buffer.concat([Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00]), randomBytes(100_000)]);
const HTML = Buffer.from('<!DOCTYPE html><html><head><title>Sign in</title></head><body>Log in to download this model.</body></html>');

interface Seen {
  path: string;
  k: string;
  range?: string;
  ifRange?: string;
}

/**
 * Behaviour comes from the query: k (the test's key: its own counters and content), rate (bytes
 * per 10 ms tick), every/at + times (destroy the socket after `every` bytes of a response, or at
 * absolute offset `at`, the first `times` responses), stall (hang after that many bytes, first
 * time), lie (Content-Length says this many more bytes), more (chunked, sends this many more than
 * its Content-Range says), badstart (206 from the wrong offset), norange (always 200),
 * fail + times (that status the first `times` requests).
 */
class ModelServer {
  seen: Seen[] = [];
  /** per key: a replacement file (the "file changed upstream" case) */
  content = new Map<string, { data: Buffer; etag: string }>();
  /** keys whose failures stop (the server got better) */
  healed = new Set<string>();
  url = '';
  private hits = new Map<string, number>();
  private server = http.createServer((req, res) => void this.handle(req, res));

  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  of(k: string): Seen[] {
    return this.seen.filter((s) => s.k === k);
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://x');
    const q = (name: string) => u.searchParams.get(name);
    const num = (name: string) => (q(name) === null ? null : Number(q(name)));
    const k = q('k') ?? u.pathname;
    const hitKey = `${k} ${u.pathname}`; // the Hugging Face redirect and its CDN count apart
    const hit = (this.hits.get(hitKey) ?? 0) + 1;
    this.hits.set(hitKey, hit);
    this.seen.push({ path: u.pathname, k, range: req.headers.range, ifRange: req.headers['if-range'] as string | undefined });
    const failing = (times: number | null) => !this.healed.has(k) && hit <= (times ?? 1);

    const hf = /^\/org\/(repo|bad)\/resolve\/main\/model\.safetensors$/.exec(u.pathname);
    if (hf) {
      // Hugging Face: the LFS sha256 is on the redirect to the CDN, whose own ETag is something else.
      const linked = hf[1] === 'repo' ? FILE_SHA : 'ab'.repeat(32);
      res.writeHead(302, {
        location: `/cdn/blobs/${linked}?X-Amz-Signature=abc&k=${k}${q('every') ? `&every=${q('every')}&times=${q('times')}` : ''}`,
        'x-linked-etag': hf[1] === 'repo' ? `"${linked}"` : `W/"${linked}"`,
        'x-linked-size': String(FILE.length),
        'x-repo-commit': 'c0ffee',
        etag: `"${linked}"`,
      });
      return void res.end();
    }
    if (u.pathname.startsWith('/gated/')) return void res.writeHead(401).end('Access to model is restricted');
    if (u.pathname.startsWith('/missing/')) return void res.writeHead(404).end('Entry not found');
    if (u.pathname.startsWith('/teapot/')) return void res.writeHead(418, "I'm a teapot").end();
    if (q('fail') && failing(num('times'))) return void res.writeHead(Number(q('fail'))).end('server error');
    if (u.pathname.startsWith('/pickle/')) return void res.writeHead(200, { 'content-length': PICKLE.length }).end(PICKLE);
    if (u.pathname.startsWith('/html/')) return void res.writeHead(200, { 'content-length': HTML.length, 'content-type': 'text/html' }).end(HTML);

    const { data, etag } = this.content.get(k) ?? { data: FILE, etag: '"v1"' };
    const headers: http.OutgoingHttpHeaders = { etag, 'accept-ranges': 'bytes', 'content-type': 'application/octet-stream' };
    if (u.pathname.startsWith('/api/download/')) headers['content-disposition'] = `attachment; filename="${u.pathname.endsWith('ckpt') ? 'model.ckpt' : 'my lora.safetensors'}"`;
    const lie = num('lie') ?? 0;
    const announced = data.length + lie; // a lying server keeps lying, in Content-Range too
    let start = 0;
    let status = 200;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const ifRange = req.headers['if-range'];
    if (m && q('norange') === null && (!ifRange || ifRange === etag)) {
      start = Number(m[1]);
      status = 206;
      if (start >= announced) return void res.writeHead(416, { 'content-range': `bytes */${data.length}` }).end();
    }
    if (status === 206 && q('badstart') !== null) start += 1000;
    let body = data.subarray(Math.min(start, data.length));
    if (status === 206) headers['content-range'] = `bytes ${start}-${announced - 1}/${announced}`;
    if (q('more') !== null) {
      status = 206; // chunked: the only way a body can be longer than announced over HTTP/1.1
      headers['content-range'] = `bytes ${start}-${data.length - 1}/${data.length}`;
      body = Buffer.concat([body, randomBytes(Number(q('more')))]);
    } else headers['content-length'] = announced - start;
    res.writeHead(status, headers);
    res.flushHeaders();

    let limit = body.length;
    let end: 'end' | 'destroy' | 'hang' = lie ? 'destroy' : 'end';
    if (q('every') !== null && failing(num('times'))) [limit, end] = [Math.min(limit, num('every')!), 'destroy'];
    if (q('at') !== null && failing(num('times'))) [limit, end] = [Math.max(0, Math.min(limit, num('at')! - start)), 'destroy'];
    if (q('stall') !== null && failing(1)) [limit, end] = [Math.min(limit, num('stall')!), 'hang'];
    const rate = num('rate');
    for (let off = 0; off < limit && !res.destroyed; ) {
      const n = rate ? Math.min(rate, limit - off) : limit - off;
      const flushed = new Promise<void>((r) => res.write(body.subarray(off, off + n), () => r()));
      off += n;
      if (rate) await new Promise((r) => setTimeout(r, 10));
      else await flushed;
    }
    if (end === 'end') res.end();
    else if (end === 'destroy') setTimeout(() => res.destroy(), 5);
  }
}

const server = new ModelServer();
let root: string;
let n = 0;

beforeAll(async () => {
  await server.start();
  root = tmpDir('atelier-downloads-');
});
afterAll(async () => {
  await server.close();
  fs.rmSync(root, { recursive: true, force: true });
});

interface Harness {
  svc: DownloadsService;
  workDir: string;
  destDir: string;
  events: Download[];
  logs: string[];
  placed: string[];
  /** destDir listings seen by onChanged before a download was done (must all be empty) */
  early: string[];
}

function harness(extra: Partial<DownloadsOptions> = {}, dirs?: { workDir: string; destDir: string }): Harness {
  const i = ++n;
  const workDir = dirs?.workDir ?? path.join(root, `w${i}`, 'downloads');
  const destDir = dirs?.destDir ?? path.join(root, `w${i}`, 'models', 'downloads');
  const h: Harness = { svc: null as unknown as DownloadsService, workDir, destDir, events: [], logs: [], placed: [], early: [] };
  h.svc = new DownloadsService({
    workDir,
    destDir,
    retryDelay: () => 10,
    maxRetries: 3,
    freeBytes: () => 1e12,
    log: (l) => {
      h.logs.push(l);
      if (process.env.DEBUG_DOWNLOADS) console.log(l);
    },
    onChanged: (d) => {
      h.events.push(d);
      if (d.state !== 'done' && fs.existsSync(destDir)) h.early.push(...fs.readdirSync(destDir));
    },
    onPlaced: (f) => {
      expect(fs.readFileSync(f).length).toBe(FILE.length);
      h.placed.push(f);
    },
    ...extra,
  });
  return h;
}

const url = (p: string, query = '') => `${server.url}${p}${query ? `?${query}` : ''}`;
const key = () => `t${++n}`;
const find = (h: Harness, id: string) => h.svc.list().find((d) => d.id === id)!;
const partOf = (h: Harness, id: string) => path.join(h.workDir, `${id}.part`);
const sizeOf = (file: string) => (fs.existsSync(file) ? fs.statSync(file).size : -1);

function expectPlaced(h: Harness, d: Download, name = 'model.safetensors'): void {
  expect(d.error).toBeNull();
  expect(d.state).toBe('done');
  expect(d.path).toBe(path.join(h.destDir, name));
  expect(sha(fs.readFileSync(d.path!))).toBe(FILE_SHA);
  expect(d.received).toBe(FILE.length);
  expect(d.total).toBe(FILE.length);
  expect(fs.readdirSync(h.workDir)).toEqual([`${d.id}.json`]); // no .part left behind
  expect(h.early).toEqual([]);
  expect(h.placed).toContain(d.path);
}

describe('normalizeModelUrl', () => {
  it('turns Hugging Face page links into file links and drops their query; keeps other hosts\' queries', () => {
    expect(normalizeModelUrl('https://huggingface.co/stabilityai/sdxl-vae/blob/main/sdxl_vae.safetensors?download=true')).toEqual({
      fetchUrl: 'https://huggingface.co/stabilityai/sdxl-vae/resolve/main/sdxl_vae.safetensors',
      filename: 'sdxl_vae.safetensors',
    });
    expect(normalizeModelUrl('https://hf.co/datasets/me/loras/blob/refs%2Fpr%2F1/sub/x.safetensors#L1').fetchUrl).toBe('https://hf.co/datasets/me/loras/resolve/refs%2Fpr%2F1/sub/x.safetensors');
    expect(normalizeModelUrl('https://huggingface.co/a/b/resolve/main/c.safetensors?download=true').fetchUrl).toBe('https://huggingface.co/a/b/resolve/main/c.safetensors');
    expect(normalizeModelUrl('https://civitai.com/api/download/models/12345?type=Model&format=SafeTensor')).toEqual({
      fetchUrl: 'https://civitai.com/api/download/models/12345?type=Model&format=SafeTensor',
      filename: null,
    });
    expect(normalizeModelUrl('https://example.com/files/My%20LoRA.safetensors').filename).toBe('My LoRA.safetensors');
    for (const bad of ['ftp://example.com/a.safetensors', 'file:///etc/passwd', 'not a url', '']) {
      expect(() => normalizeModelUrl(bad)).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    }
  });
});

describe('downloads', () => {
  it('refuses bad input before any request: scheme, pickle links, paths as names, non-safetensors names, bad sha256, a second download of the same URL', async () => {
    const h = harness();
    const before = server.seen.length;
    expect(() => h.svc.start('ftp://x/model.safetensors')).toThrow(expect.objectContaining({ code: 'BAD_REQUEST' }));
    expect(() => h.svc.start(url('/m/model.ckpt'))).toThrow(/pickle/);
    expect(() => h.svc.start(url('/m/model.safetensors'), { filename: '../evil.safetensors' })).toThrow(/not a path/);
    expect(() => h.svc.start(url('/m/model.safetensors'), { filename: 'model.bin' })).toThrow(/must end in \.safetensors/);
    expect(() => h.svc.start(url('/m/model.safetensors'), { sha256: 'abc' })).toThrow(/64 hexadecimal/);
    expect(() => h.svc.pause('nope')).toThrow(expect.objectContaining({ code: 'NOT_FOUND' }));
    expect(server.seen.length).toBe(before);
    const k = key();
    const d = h.svc.start(url('/m/model.safetensors', `k=${k}&rate=32768`));
    expect(d.state).toBe('queued');
    expect(() => h.svc.start(url('/m/model.safetensors', `k=${k}&rate=32768`))).toThrow(/already being downloaded/);
    expect(() => h.svc.remove(d.id)).toThrow(/cancel it first/);
    h.svc.cancel(d.id);
    await h.svc.whenSettled(d.id);
    expect(h.svc.remove(d.id)).toBe(true);
    expect(h.svc.remove(d.id)).toBe(false);
    expect(h.svc.list()).toEqual([]);
  });

  it('downloads a file, places it only when complete and verified, and reports each state', async () => {
    const h = harness();
    const d = h.svc.start(url('/m/model.safetensors', `k=${key()}`));
    const done = await h.svc.whenSettled(d.id);
    expectPlaced(h, done);
    expect(done.checksumSource).toBeNull();
    const states = h.events.map((e) => e.state).filter((s, i, a) => s !== a[i - 1]);
    expect(states).toEqual(['queued', 'downloading', 'verifying', 'done']);
    expect(JSON.parse(fs.readFileSync(path.join(h.workDir, `${d.id}.json`), 'utf8'))).toMatchObject({ state: 'done', path: done.path });
  });

  it('reports progress: received, speed, ETA, at most ~4 events a second, state file flushed while downloading', async () => {
    const h = harness();
    const k = key();
    const rate = 12 * 1024; // per 10 ms tick: about 1.2 MB/s, 2.5 s for the file
    const d = h.svc.start(url('/m/model.safetensors', `k=${k}&rate=${rate}`));
    const json = path.join(h.workDir, `${d.id}.json`);
    let flushedWhileRunning = 0;
    await waitFor(() => {
      const st = JSON.parse(fs.readFileSync(json, 'utf8')) as Download;
      if (st.state === 'downloading' && st.received > 0) flushedWhileRunning = st.received;
      return flushedWhileRunning > 0 || find(h, d.id).state !== 'downloading';
    }, 10000);
    expect(flushedWhileRunning).toBeGreaterThan(0);
    const done = await h.svc.whenSettled(d.id);
    expectPlaced(h, done);
    const progress = h.events.filter((e) => e.state === 'downloading' && e.received > 0);
    const spanS = (Date.parse(done.updatedAt) - Date.parse(done.createdAt)) / 1000;
    expect(progress.length).toBeGreaterThan(2);
    expect(progress.length).toBeLessThanOrEqual(Math.ceil(spanS * 4) + 2);
    const received = progress.map((e) => e.received);
    expect([...received].sort((a, b) => a - b)).toEqual(received);
    const measured = FILE.length / spanS;
    const speeds = progress.map((e) => e.bytesPerSec).filter((s) => s > 0);
    expect(speeds.length).toBeGreaterThan(0);
    const mid = [...speeds].sort((a, b) => a - b)[Math.floor(speeds.length / 2)];
    expect(mid).toBeGreaterThan(measured / 4);
    expect(mid).toBeLessThan(measured * 4);
    expect(progress.some((e) => e.etaSeconds !== null && e.etaSeconds > 0)).toBe(true);
    expect(progress.every((e) => e.total === FILE.length)).toBe(true);
  });

  it('pause keeps the partial file; resume asks for the rest with Range and If-Range, and checks a given sha256', async () => {
    const h = harness();
    const k = key();
    const d = h.svc.start(url('/m/model.safetensors', `k=${k}&rate=32768`), { sha256: FILE_SHA.toUpperCase() });
    expect(d.checksumSource).toBe('user');
    await waitFor(() => find(h, d.id).received > 500_000, 10000);
    h.svc.pause(d.id);
    const paused = await h.svc.whenSettled(d.id);
    expect(paused.state).toBe('paused');
    expect(paused.received).toBeGreaterThan(500_000);
    expect(paused.received).toBeLessThan(FILE.length);
    expect(sizeOf(partOf(h, d.id))).toBe(paused.received);
    expect(JSON.parse(fs.readFileSync(path.join(h.workDir, `${d.id}.json`), 'utf8'))).toMatchObject({ state: 'paused', received: paused.received, validator: '"v1"' });
    expect(fs.existsSync(h.destDir) ? fs.readdirSync(h.destDir) : []).toEqual([]);
    h.svc.resume(d.id);
    const done = await h.svc.whenSettled(d.id);
    expectPlaced(h, done);
    expect(done.sha256).toBe(FILE_SHA);
    expect(server.of(k).map((s) => [s.range, s.ifRange])).toEqual([
      [undefined, undefined],
      [`bytes=${paused.received}-`, '"v1"'],
    ]);
  });

  it('after an app restart (a new service on the same folder) the download is paused with the bytes really on disk, and resume finishes it', async () => {
    const a = harness();
    const k = key();
    const d = a.svc.start(url('/m/model.safetensors', `k=${k}&rate=32768`));
    await waitFor(() => find(a, d.id).received > 400_000, 10000);
    await a.svc.dispose();
    expect(find(a, d.id).state).toBe('paused');
    // The app was killed between two flushes: the state file says more than the .part holds.
    const json = path.join(a.workDir, `${d.id}.json`);
    fs.writeFileSync(json, JSON.stringify({ ...JSON.parse(fs.readFileSync(json, 'utf8')), state: 'downloading', received: FILE.length - 1 }));
    const onDisk = sizeOf(partOf(a, d.id)) - 1234;
    fs.truncateSync(partOf(a, d.id), onDisk);

    const b = harness({}, { workDir: a.workDir, destDir: a.destDir });
    expect(b.svc.list()).toMatchObject([{ id: d.id, state: 'paused', received: onDisk, total: FILE.length, filename: 'model.safetensors' }]);
    b.svc.resume(d.id);
    const done = await b.svc.whenSettled(d.id);
    expectPlaced(b, done);
    expect(server.of(k).at(-1)).toMatchObject({ range: `bytes=${onDisk}-`, ifRange: '"v1"' });
  });

  it('free disk: refuses a download that would not fit (sizes in GB), and a resume before any request; the partial survives for later', async () => {
    const tight = harness({ freeBytes: () => 10_000_000 });
    const k0 = key();
    const refused = await tight.svc.whenSettled(tight.svc.start(url('/m/model.safetensors', `k=${k0}`)).id);
    expect(refused.state).toBe('failed');
    expect(refused.error?.code).toBe('DISK_FULL');
    expect(refused.error?.message).toMatch(/0\.00 GB still to download needs 0\.07 GB free .* only 0\.01 GB are free/);
    expect(refused.total).toBe(FILE.length);

    const a = harness();
    const k = key();
    const d = a.svc.start(url('/m/model.safetensors', `k=${k}&rate=32768`));
    await waitFor(() => find(a, d.id).received > 300_000, 10000);
    await a.svc.dispose();
    const kept = sizeOf(partOf(a, d.id));
    const requests = server.of(k).length;
    const b = harness({ freeBytes: () => 50_000_000 }, { workDir: a.workDir, destDir: a.destDir });
    b.svc.resume(d.id);
    const full = await b.svc.whenSettled(d.id);
    expect(full).toMatchObject({ state: 'failed', error: { code: 'DISK_FULL' } });
    expect(server.of(k).length).toBe(requests); // refused before asking the server
    expect(sizeOf(partOf(a, d.id))).toBe(kept);
    const c = harness({}, { workDir: a.workDir, destDir: a.destDir });
    c.svc.resume(d.id);
    expectPlaced(c, await c.svc.whenSettled(d.id));
  });

  it.skipIf(process.platform !== 'linux' || !fs.existsSync('/dev/full'))('a disk that fills up while writing (ENOSPC) fails with DISK_FULL, resumable', async () => {
    const h = harness();
    const d = h.svc.start(url('/m/model.safetensors', `k=${key()}`));
    fs.symlinkSync('/dev/full', partOf(h, d.id)); // every write to the .part now gets ENOSPC
    const full = await h.svc.whenSettled(d.id);
    expect(full.state).toBe('failed');
    expect(full.error?.code).toBe('DISK_FULL');
    expect(full.error?.message).toMatch(/disk filled up .* Free some space, then Resume/);
    expect(fs.existsSync(path.join(h.workDir, `${d.id}.json`))).toBe(true);
    fs.unlinkSync(partOf(h, d.id));
    h.svc.resume(d.id);
    expectPlaced(h, await h.svc.whenSettled(d.id));
  });

  it('a file changed upstream while paused (If-Range no longer matches) is downloaded again from byte 0', async () => {
    const h = harness();
    const k = key();
    const d = h.svc.start(url('/m/model.safetensors', `k=${k}&rate=32768`));
    await waitFor(() => find(h, d.id).received > 400_000, 10000);
    h.svc.pause(d.id);
    await h.svc.whenSettled(d.id);
    const v2 = makeModel();
    server.content.set(k, { data: v2, etag: '"v2"' });
    h.svc.resume(d.id);
    const done = await h.svc.whenSettled(d.id);
    expect(done.state).toBe('done');
    expect(sha(fs.readFileSync(done.path!))).toBe(sha(v2));
    expect(server.of(k).at(-1)?.ifRange).toBe('"v1"');
    expect(h.logs.join('\n')).toMatch(/answered 200 to a Range request .* restarting from byte 0/);
  });

  it('a server that ignores ranges: the retry after a drop starts again from 0 (logged) and the file is still right', async () => {
    const h = harness();
    const k = key();
    const d = h.svc.start(url('/m/model.safetensors', `k=${k}&norange&every=1000000&times=1`));
    expectPlaced(h, await h.svc.whenSettled(d.id));
    const seen = server.of(k);
    expect(seen).toHaveLength(2);
    expect(seen[1].range).toMatch(/^bytes=\d+-$/);
    expect(h.logs.join('\n')).toMatch(/restarting from byte 0/);
  });

  it('dropped connections are retried from what is on disk; the retry count starts over while bytes keep coming', async () => {
    const h = harness({ maxRetries: 2 });
    const k = key();
    const d = h.svc.start(url('/m/model.safetensors', `k=${k}&every=700000&times=4`));
    expectPlaced(h, await h.svc.whenSettled(d.id));
    const starts = server.of(k).map((s) => Number(/bytes=(\d+)-/.exec(s.range ?? '')?.[1] ?? 0));
    expect(starts).toHaveLength(5); // 4 drops, more than maxRetries, but each brought bytes
    expect(starts[0]).toBe(0);
    for (let i = 1; i < starts.length; i++) expect(starts[i]).toBeGreaterThan(starts[i - 1]);
    expect(server.of(k).slice(1).every((s) => s.ifRange === '"v1"')).toBe(true);
  });

  it('a connection that keeps dropping at the same byte fails after maxRetries, keeping what arrived; Resume continues it', async () => {
    const h = harness({ maxRetries: 3 });
    const k = key();
    const d = h.svc.start(url('/m/model.safetensors', `k=${k}&at=1000000&times=1000`));
    const failed = await h.svc.whenSettled(d.id);
    expect(failed.state).toBe('failed');
    expect(failed.error?.code).toBe('INTERNAL');
    expect(failed.error?.message).toMatch(/stopped after 3 retries .*: [\d.]+ (KB|MB) of 3\.1 MB arrived and are kept\. Resume continues from there\./);
    expect(failed.received).toBeGreaterThan(0);
    expect(sizeOf(partOf(h, d.id))).toBe(failed.received);
    expect(server.of(k).length).toBeGreaterThanOrEqual(4);
    server.healed.add(k);
    const before = server.of(k).length;
    h.svc.resume(d.id);
    expectPlaced(h, await h.svc.whenSettled(d.id));
    expect(server.of(k)[before].range).toBe(`bytes=${failed.received}-`);
  });

  it('a stalled transfer (no bytes for stallTimeoutMs) is treated as a drop', async () => {
    const h = harness({ stallTimeoutMs: 400 });
    const k = key();
    const d = h.svc.start(url('/m/model.safetensors', `k=${k}&stall=500000`));
    expectPlaced(h, await h.svc.whenSettled(d.id));
    expect(server.of(k)).toHaveLength(2);
    expect(server.of(k)[1].range).toMatch(/^bytes=\d+-$/);
    expect(h.logs.join('\n')).toMatch(/no data for 400 ms; retry 1 of 3/);
  });

  it('a Content-Length that promises more than the server sends is a drop: retried, then failed', async () => {
    const h = harness({ maxRetries: 2 });
    const k = key();
    const d = h.svc.start(url('/m/model.safetensors', `k=${k}&lie=50000`));
    const failed = await h.svc.whenSettled(d.id);
    expect(failed.state).toBe('failed');
    expect(failed.error?.message).toMatch(/stopped after 2 retries \(the connection dropped: .*\): 3\.1 MB of 3\.2 MB arrived and are kept\. Resume continues from there\./);
    expect(server.of(k).length).toBeGreaterThanOrEqual(3);
    expect(fs.existsSync(h.destDir) ? fs.readdirSync(h.destDir) : []).toEqual([]);
  });

  it('a server that sends more than it announced is stopped, and the partial file deleted', async () => {
    const h = harness();
    const d = h.svc.start(url('/m/model.safetensors', `k=${key()}&more=100000`));
    const failed = await h.svc.whenSettled(d.id);
    expect(failed.state).toBe('failed');
    expect(failed.error?.message).toContain(`the server sent more than the ${FILE.length} bytes it announced`);
    expect(fs.existsSync(partOf(h, d.id))).toBe(false);
    expect(fs.existsSync(h.destDir) ? fs.readdirSync(h.destDir) : []).toEqual([]);
  });

  it('a 206 from the wrong offset restarts from byte 0 instead of splicing', async () => {
    const h = harness();
    const k = key();
    const d = h.svc.start(url('/m/model.safetensors', `k=${k}&badstart&at=1000000&times=1`));
    expectPlaced(h, await h.svc.whenSettled(d.id));
    expect(server.of(k).map((s) => s.range?.replace(/\d+/, 'N'))).toEqual([undefined, 'bytes=N-', undefined]);
    expect(h.logs.join('\n')).toMatch(/sent bytes from \d+ for a request from byte \d+; restarting from byte 0/);
  });

  it('Hugging Face: the LFS sha256 on the redirect is checked; a resume through the redirect hashes the file from disk', async () => {
    const h = harness();
    const k = key();
    const d = h.svc.start(url('/org/repo/resolve/main/model.safetensors', `k=${k}&every=1000000&times=1`));
    const done = await h.svc.whenSettled(d.id);
    expectPlaced(h, done);
    expect(done).toMatchObject({ sha256: FILE_SHA, checksumSource: 'source' });
    expect(server.of(k).map((s) => [s.path.split('/')[1], s.range?.replace(/\d+/, 'N'), s.ifRange])).toEqual([
      ['org', undefined, undefined],
      ['cdn', undefined, undefined],
      ['org', 'bytes=N-', '"v1"'],
      ['cdn', 'bytes=N-', '"v1"'],
    ]);
  });

  it('Hugging Face: a file whose sha256 does not match the published one fails, saying both, and is deleted', async () => {
    const h = harness();
    const d = h.svc.start(url('/org/bad/resolve/main/model.safetensors', `k=${key()}`));
    const failed = await h.svc.whenSettled(d.id);
    expect(failed.state).toBe('failed');
    expect(failed.checksumSource).toBe('source');
    expect(failed.error?.message).toContain(`its sha256 is ${FILE_SHA.slice(0, 12)}…, but the sha256 the source publishes is ${'ab'.repeat(6)}…`);
    expect(fs.existsSync(partOf(h, d.id))).toBe(false);
    expect(fs.existsSync(h.destDir) ? fs.readdirSync(h.destDir) : []).toEqual([]);
  });

  it('after a resume the sha256 is computed from the file on disk, so bytes damaged while paused are caught', async () => {
    const h = harness();
    const d = h.svc.start(url('/m/model.safetensors', `k=${key()}&rate=32768`), { sha256: FILE_SHA });
    await waitFor(() => find(h, d.id).received > 400_000, 10000);
    h.svc.pause(d.id);
    await h.svc.whenSettled(d.id);
    const fd = fs.openSync(partOf(h, d.id), 'r+');
    fs.writeSync(fd, Buffer.from([FILE[300_000] ^ 0xff]), 0, 1, 300_000);
    fs.closeSync(fd);
    h.svc.resume(d.id);
    const failed = await h.svc.whenSettled(d.id);
    expect(failed.state).toBe('failed');
    expect(failed.error?.message).toMatch(new RegExp(`but the sha256 you gave is ${FILE_SHA.slice(0, 12)}…`));
    expect(fs.existsSync(partOf(h, d.id))).toBe(false);
  });

  it('HTTP errors: 401/403 say the model is gated, 404 not found, other 4xx their status; none is retried', async () => {
    const h = harness();
    const gated = await h.svc.whenSettled(h.svc.start(url('/gated/model.safetensors', `k=${key()}`)).id);
    expect(gated).toMatchObject({ state: 'failed', error: { code: 'BAD_REQUEST' } });
    expect(gated.error?.message).toMatch(/answered 401: .*needs a login or token: this model is gated/);
    const missing = await h.svc.whenSettled(h.svc.start(url('/missing/model.safetensors', `k=${key()}`)).id);
    expect(missing).toMatchObject({ state: 'failed', error: { code: 'NOT_FOUND' } });
    expect(missing.error?.message).toMatch(/not found/);
    const teapot = await h.svc.whenSettled(h.svc.start(url('/teapot/model.safetensors', `k=${key()}`)).id);
    expect(teapot).toMatchObject({ state: 'failed', error: { code: 'BAD_REQUEST' } });
    expect(teapot.error?.message).toMatch(/HTTP 418 I'm a teapot/);
    for (const d of [gated, missing, teapot]) expect(server.seen.filter((s) => s.path === new URL(d.fetchUrl).pathname && s.k === new URL(d.fetchUrl).searchParams.get('k'))).toHaveLength(1);
  });

  it('5xx is retried like a drop: 500 then OK succeeds; a server that keeps failing fails after maxRetries', async () => {
    const h = harness({ maxRetries: 2 });
    const k = key();
    expectPlaced(h, await h.svc.whenSettled(h.svc.start(url('/m/model.safetensors', `k=${k}&fail=500&times=1`)).id));
    expect(server.of(k)).toHaveLength(2);
    const k2 = key();
    const down = await h.svc.whenSettled(h.svc.start(url('/m/other.safetensors', `k=${k2}&fail=503&times=99`)).id);
    expect(down.state).toBe('failed');
    expect(down.error?.message).toMatch(/stopped after 2 retries \(127\.0\.0\.1:\d+ answered 503 Service Unavailable\): Nothing arrived yet; Resume tries again\./);
    expect(server.of(k2)).toHaveLength(3);
  });

  it('what is not a safetensors file is refused after download with NOT_A_MODEL, saying what it is, and deleted', async () => {
    const h = harness();
    const pickle = await h.svc.whenSettled(h.svc.start(url('/pickle/model.safetensors', `k=${key()}`)).id);
    expect(pickle).toMatchObject({ state: 'failed', error: { code: 'NOT_A_MODEL' } });
    expect(pickle.error?.message).toMatch(/model\.safetensors is a Python pickle/);
    const html = await h.svc.whenSettled(h.svc.start(url('/html/model.safetensors', `k=${key()}`)).id);
    expect(html).toMatchObject({ state: 'failed', error: { code: 'NOT_A_MODEL' } });
    expect(html.error?.message).toMatch(/model\.safetensors is a web page \(HTML; the link may lead to a login or download page/);
    for (const d of [pickle, html]) expect(fs.existsSync(partOf(h, d.id))).toBe(false);
    expect(fs.existsSync(h.destDir) ? fs.readdirSync(h.destDir) : []).toEqual([]);
    expect(h.placed).toEqual([]);
  });

  it('names: from Content-Disposition when the link has none, refused when the server names a pickle, "name (2)" when taken', async () => {
    const h = harness();
    const named = await h.svc.whenSettled(h.svc.start(url('/api/download/123', `k=${key()}`)).id);
    expectPlaced(h, named, 'my lora.safetensors');
    const ckpt = await h.svc.whenSettled(h.svc.start(url('/api/download/ckpt', `k=${key()}`)).id);
    expect(ckpt).toMatchObject({ state: 'failed', error: { code: 'NOT_A_MODEL' } });
    expect(ckpt.error?.message).toMatch(/The server sends model\.ckpt, not a \.safetensors file/);
    const first = await h.svc.whenSettled(h.svc.start(url('/m/model.safetensors', `k=${key()}`)).id);
    const second = await h.svc.whenSettled(h.svc.start(url('/m/model.safetensors', `k=${key()}`)).id);
    const third = await h.svc.whenSettled(h.svc.start(url('/m/x.safetensors', `k=${key()}`), { filename: 'model.safetensors' }).id);
    expect([first.path, second.path, third.path].map((p) => path.basename(p!))).toEqual(['model.safetensors', 'model (2).safetensors', 'model (3).safetensors']);
    for (const d of [first, second, third]) expect(sha(fs.readFileSync(d.path!))).toBe(FILE_SHA);
  });

  it('onPlaced may refuse the file: the download fails with its message and the file leaves the model folder', async () => {
    const h = harness({
      onPlaced: () => {
        throw new AtelierError('NOT_A_MODEL', 'model.safetensors is a safetensors file, but not a model Atelier knows.');
      },
    });
    const d = await h.svc.whenSettled(h.svc.start(url('/m/model.safetensors', `k=${key()}`)).id);
    expect(d).toMatchObject({ state: 'failed', path: null, error: { code: 'NOT_A_MODEL', message: 'model.safetensors is a safetensors file, but not a model Atelier knows.' } });
    expect(fs.readdirSync(h.destDir)).toEqual([]);
  });

  it('cancel deletes the partial file and its state; pause keeps them; remove() forgets only what has stopped', async () => {
    const h = harness();
    const k = key();
    const d = h.svc.start(url('/m/model.safetensors', `k=${k}&rate=32768`));
    await waitFor(() => find(h, d.id).received > 200_000, 10000);
    h.svc.pause(d.id);
    await h.svc.whenSettled(d.id);
    expect(fs.readdirSync(h.workDir).sort()).toEqual([`${d.id}.json`, `${d.id}.part`]);
    expect(() => h.svc.remove(d.id)).toThrow(/paused: cancel it first/);
    h.svc.resume(d.id);
    await waitFor(() => find(h, d.id).state === 'downloading' && find(h, d.id).received > 600_000, 10000);
    expect(h.svc.cancel(d.id).state).toBe('cancelled');
    const cancelled = await h.svc.whenSettled(d.id);
    expect(cancelled.state).toBe('cancelled');
    expect(fs.readdirSync(h.workDir)).toEqual([]);
    expect(() => h.svc.resume(d.id)).toThrow(/start it again/);
    expect(h.svc.remove(d.id)).toBe(true);
    // A fresh service does not bring it back.
    expect(harness({}, { workDir: h.workDir, destDir: h.destDir }).svc.list()).toEqual([]);
  });

  const shm = '/dev/shm';
  const crossDevice = fs.existsSync(shm) && fs.statSync(shm).dev !== fs.statSync(os.tmpdir()).dev;
  it.skipIf(!crossDevice)('a download folder on another volume: the file is copied to a temp name in the model folder, then renamed (EXDEV)', async () => {
    const workDir = fs.mkdtempSync(path.join(shm, 'atelier-dl-'));
    try {
      const h = harness({}, { workDir, destDir: path.join(root, `x${++n}`, 'models') });
      const d = await h.svc.whenSettled(h.svc.start(url('/m/model.safetensors', `k=${key()}`)).id);
      expectPlaced(h, d);
      expect(fs.readdirSync(h.destDir)).toEqual(['model.safetensors']);
    } finally {
      fs.rmSync(workDir, { recursive: true, force: true });
    }
  });
});
