/**
 * Downloads of model files from a URL (Hugging Face file links, direct links), built for
 * multi-gigabyte files on connections that drop: the bytes go to `<workDir>/<id>.part` with the
 * state beside it in `<id>.json`, so a pause, a dropped connection or an app restart continues
 * with an HTTP Range request from what is on disk instead of starting over.
 *
 * Nothing appears in the model folder until the whole file has arrived, matched its sha256 (when
 * one is known: given by the user, or published by Hugging Face for LFS files) and proved to be a
 * safetensors file from its header; then it is moved there with a rename, so the library never
 * sees half a model. Plain Node, no Electron: the CLI and the tests drive it directly.
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { AtelierError, type ErrorCode } from '../../../shared/errors';
import { TEMP_MARK, writeFileAtomic } from '../../lib/fsx';
import { NotSafetensorsError, readSafetensorsHeader, sniffFileKind } from './safetensors';

export type DownloadState = 'queued' | 'downloading' | 'paused' | 'verifying' | 'done' | 'failed' | 'cancelled';

export interface Download {
  id: string;
  url: string;
  /** the URL actually fetched (HF blob → resolve) */
  fetchUrl: string;
  /** '' until the server names the file (Content-Disposition) when neither the user nor the URL did */
  filename: string;
  state: DownloadState;
  received: number;
  total: number | null;
  bytesPerSec: number;
  etaSeconds: number | null;
  /** expected sha256 (hex): given by the user, or published by the source (Hugging Face's x-linked-etag / ETag of LFS files) */
  sha256: string | null;
  checksumSource: 'user' | 'source' | null;
  error: { code: string; message: string } | null;
  /** final path in the library once done */
  path: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface DownloadsOptions {
  /** where partial files and their state live, e.g. <data>/downloads */
  workDir: string;
  /** where finished files go, e.g. <data>/models/downloads (created) */
  destDir: string;
  onChanged?: (d: Download) => void;
  /** free bytes on the volume of a folder; default fs.statfsSync */
  freeBytes?: (dir: string) => number;
  fetch?: typeof fetch;
  maxRetries?: number;
  /** ms before retry k (default 500*2^k, capped 10 s) */
  retryDelay?: (k: number) => number;
  /** a transfer that delivers no byte for this long is treated as a dropped connection (default 60 s) */
  stallTimeoutMs?: number;
  log?: (line: string) => void;
  now?: () => Date;
  /** called with the final path after placement, e.g. to register it in the model library; may throw to refuse */
  onPlaced?: (file: string) => void;
}

/** Room left over on the disk after the download, so finishing one never fills the disk to the last byte. */
const DISK_MARGIN = 64 * 1024 * 1024;
const EMIT_EVERY_MS = 250;
const FLUSH_EVERY_MS = 2000;
const RATE_WINDOW_MS = 1500;
const MAX_REDIRECTS = 10;
const MAX_RESTARTS = 3;
const HF_HOSTS = new Set(['huggingface.co', 'www.huggingface.co', 'hf.co']);
const PICKLE_EXT = /\.(ckpt|pt|pth|bin|pkl|pickle)$/i;
const ACTIVE: ReadonlySet<DownloadState> = new Set(['queued', 'downloading', 'verifying', 'paused']);

/** The response ended before the bytes it announced, the socket broke, or the server failed (5xx): worth a Range retry. */
class Retryable extends Error {}
/** What is on disk cannot be continued (a 206 from the wrong offset, a changed file): start again from byte 0. */
class Restart extends Error {}

/** What a run was told while it ran; decides how its aborted transfer ends. */
type StopReason = 'pause' | 'cancel' | 'dispose';

/** One start or resume: its own abort and stop reason, so a run still unwinding from a pause cannot end the next one. */
interface Run {
  ctl: AbortController;
  stop: StopReason | null;
}

interface Entry {
  d: Download;
  /** ETag (strong) or Last-Modified of the bytes on disk, sent as If-Range so a changed file is never spliced */
  validator: string | null;
  /** whether the file name is settled (given, from the URL, or from Content-Disposition) */
  named: boolean;
  /** the latest run, until it ends */
  current: Run | null;
  /** every run not yet ended, chained */
  running: Promise<void> | null;
  lastEmit: number;
  lastFlush: number;
  samples: { t: number; bytes: number }[];
}

/** The state file: the Download plus what a resume needs to ask for the same bytes. */
interface Persisted extends Download {
  validator: string | null;
  named: boolean;
}

/**
 * A Hugging Face page link (`/{org}/{repo}/blob/{rev}/{path}`) becomes its file link (`/resolve/`),
 * and the query (`?download=true`) is dropped there; other hosts' queries are kept, since signed
 * links need them. Only http(s) is accepted.
 */
export function normalizeModelUrl(url: string): { fetchUrl: string; filename: string | null } {
  let u: URL;
  try {
    u = new URL(String(url ?? '').trim());
  } catch {
    throw new AtelierError('BAD_REQUEST', `"${String(url).slice(0, 200)}" is not a URL: paste a link to a .safetensors file.`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new AtelierError('BAD_REQUEST', `Only http(s) links can be downloaded, not ${u.protocol.replace(/:$/, '')}.`);
  }
  u.hash = '';
  if (HF_HOSTS.has(u.hostname.toLowerCase())) {
    const m = /^\/((?:datasets\/|spaces\/)?(?:[^/]+\/)?[^/]+)\/blob\/(.+)$/.exec(u.pathname);
    if (m) u.pathname = `/${m[1]}/resolve/${m[2]}`;
    u.search = '';
  }
  const last = u.pathname.split('/').filter(Boolean).pop() ?? '';
  let decoded = last;
  try {
    decoded = decodeURIComponent(last);
  } catch {
    /* keep it encoded */
  }
  const name = sanitizeFilename(decoded);
  return { fetchUrl: u.toString(), filename: name && name.includes('.') ? name : null };
}

/** A name safe on every OS: no folders, control characters, characters Windows refuses, or leading dots. */
function sanitizeFilename(raw: string): string {
  let name = raw.split(/[/\\]/).pop() ?? '';
  name = name.replace(/[\x00-\x1f\x7f<>:"|?*]/g, '_').replace(/^[.\s]+/, '').replace(/[.\s]+$/, '');
  if (/^(con|prn|aux|nul|com\d|lpt\d)(\.|$)/i.test(name)) name = `_${name}`;
  if (name.length > 200) {
    const ext = path.extname(name);
    name = name.slice(0, 200 - ext.length) + ext;
  }
  return name;
}

/** A user-given name: refused rather than silently changed when it is a path or not .safetensors. */
function checkGivenFilename(raw: string): string {
  if (/[/\\]/.test(raw)) throw new AtelierError('BAD_REQUEST', `filename must be a file name, not a path: "${raw}".`);
  const name = sanitizeFilename(raw);
  if (!/\.safetensors$/i.test(name) || name.length <= '.safetensors'.length) {
    throw new AtelierError('BAD_REQUEST', `filename must end in .safetensors: "${raw}". Atelier downloads only safetensors files.`);
  }
  return name;
}

function checkSha256(raw: string): string {
  const s = raw.trim().toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(s)) throw new AtelierError('BAD_REQUEST', 'sha256 must be 64 hexadecimal characters (as Hugging Face and Civitai show it).');
  return s;
}

/** Hugging Face's LFS etags are the file's sha256, quoted and sometimes weak (`W/"…"`). */
function parseShaHeader(v: string | null): string | null {
  if (!v) return null;
  const s = v.trim().replace(/^W\//i, '').replace(/^"|"$/g, '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(s) ? s : null;
}

/** `attachment; filename*=UTF-8''a%20b.safetensors` (preferred) or `filename="a b.safetensors"`. */
function contentDispositionName(v: string | null): string | null {
  if (!v) return null;
  const star = /filename\*\s*=\s*(?:[\w-]+)?'[^']*'([^;]+)/i.exec(v);
  if (star) {
    try {
      return decodeURIComponent(star[1].trim().replace(/^"|"$/g, ''));
    } catch {
      /* fall back to the plain parameter */
    }
  }
  const plain = /filename\s*=\s*(?:"([^"]*)"|([^;]+))/i.exec(v);
  return plain ? (plain[1] ?? plain[2]).trim() : null;
}

function parseContentRange(v: string | null): { start: number; end: number; total: number | null } | null {
  const m = /^\s*bytes\s+(\d+)-(\d+)\/(\d+|\*)\s*$/i.exec(v ?? '');
  return m ? { start: Number(m[1]), end: Number(m[2]), total: m[3] === '*' ? null : Number(m[3]) } : null;
}

function size(bytes: number): string {
  if (bytes >= 1e9) return `${(bytes / 1e9).toFixed(2)} GB`;
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  if (bytes >= 1e3) return `${Math.round(bytes / 1e3)} KB`;
  return `${bytes} bytes`;
}

const duration = (ms: number) => (ms < 1000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`);

const gb = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;

/** A link without its query, for logs: signed links and `?token=` must not end up in a log file. */
function redact(url: string): string {
  try {
    const u = new URL(url);
    return `${u.origin}${u.pathname}${u.search ? '?…' : ''}`;
  } catch {
    return '(bad url)';
  }
}

function isDiskFull(err: unknown): boolean {
  const code = (err as { code?: string } | null)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

const sleepFor = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal.aborted) return reject(new AtelierError('CANCELLED', 'Stopped.'));
    const onAbort = () => {
      clearTimeout(t);
      reject(new AtelierError('CANCELLED', 'Stopped.'));
    };
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });

/** Streamed, so a 7 GB checkpoint never sits in memory; stops when the download is paused or cancelled. */
function hashFile(file: string, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    const s = fs.createReadStream(file, { highWaterMark: 4 << 20 });
    const onAbort = () => s.destroy(new AtelierError('CANCELLED', 'Stopped.'));
    signal.addEventListener('abort', onAbort, { once: true });
    s.on('data', (c) => h.update(c))
      .on('end', () => {
        signal.removeEventListener('abort', onAbort);
        resolve(h.digest('hex'));
      })
      .on('error', (err) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      });
  });
}

/** What a finished file that is not safetensors is, for the message; a login page deserves its own words. */
function describeNotSafetensors(file: string, fallback: string): string {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const head = Buffer.alloc(256);
      const n = fs.readSync(fd, head, 0, head.length, 0);
      const text = head.subarray(0, n).toString('latin1').trimStart().toLowerCase();
      if (text.startsWith('<!doctype html') || text.startsWith('<html')) return 'a web page (HTML; the link may lead to a login or download page rather than the file)';
      return fallback || sniffFileKind(head.subarray(0, n));
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return fallback;
  }
}

export class DownloadsService {
  private entries = new Map<string, Entry>();
  private disposed = false;
  private readonly fetchImpl: typeof fetch;
  private readonly maxRetries: number;

  constructor(private opts: DownloadsOptions) {
    this.fetchImpl = opts.fetch ?? fetch;
    this.maxRetries = opts.maxRetries ?? 5;
    fs.mkdirSync(opts.workDir, { recursive: true });
    this.reload();
  }

  list(): Download[] {
    return [...this.entries.values()].map((e) => this.copy(e)).sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  start(url: string, opts: { sha256?: string; filename?: string } = {}): Download {
    if (this.disposed) throw new AtelierError('INTERNAL', 'Downloads are shut down.');
    const { fetchUrl, filename: fromUrl } = normalizeModelUrl(url);
    let filename = '';
    let named = false;
    if (opts.filename !== undefined && opts.filename !== '') {
      filename = checkGivenFilename(opts.filename);
      named = true;
    } else if (fromUrl && /\.safetensors$/i.test(fromUrl)) {
      filename = fromUrl;
      named = true;
    } else if (fromUrl && PICKLE_EXT.test(fromUrl)) {
      throw new AtelierError(
        'BAD_REQUEST',
        `${fromUrl} is a pickle checkpoint, which can run code when loaded: Atelier downloads only .safetensors files. Look for a .safetensors version of this model.`,
      );
    }
    const sha256 = opts.sha256 ? checkSha256(opts.sha256) : null;
    const dup = [...this.entries.values()].find((e) => e.d.fetchUrl === fetchUrl && ACTIVE.has(e.d.state));
    if (dup) throw new AtelierError('BAD_REQUEST', `This file is already being downloaded (${dup.d.filename || redact(fetchUrl)}, ${dup.d.state}).`);
    const now = this.nowIso();
    const e: Entry = {
      d: {
        id: randomBytes(6).toString('hex'),
        url: String(url).trim(),
        fetchUrl,
        filename,
        state: 'queued',
        received: 0,
        total: null,
        bytesPerSec: 0,
        etaSeconds: null,
        sha256,
        checksumSource: sha256 ? 'user' : null,
        error: null,
        path: null,
        createdAt: now,
        updatedAt: now,
      },
      validator: null,
      named,
      current: null,
      running: null,
      lastEmit: 0,
      lastFlush: 0,
      samples: [],
    };
    this.entries.set(e.d.id, e);
    this.log(e, `start ${redact(fetchUrl)}${filename ? ` → ${filename}` : ''}${sha256 ? ' (sha256 given)' : ''}`);
    this.flush(e);
    this.emit(e);
    this.launch(e);
    return this.copy(e);
  }

  /** Stops the transfer, keeping the partial file and its state for resume(). */
  pause(id: string): Download {
    const e = this.get(id);
    if (e.d.state === 'paused') return this.copy(e);
    if (!e.current) throw new AtelierError('BAD_REQUEST', `The download of ${e.d.filename || 'this file'} is ${e.d.state}; only a running download can be paused.`);
    this.stop(e.current, 'pause');
    this.setState(e, 'paused');
    return this.copy(e);
  }

  /** Continues a paused or failed download from the bytes on disk. */
  resume(id: string): Download {
    const e = this.get(id);
    if (e.d.state === 'queued' || e.d.state === 'downloading' || e.d.state === 'verifying') return this.copy(e);
    if (e.d.state !== 'paused' && e.d.state !== 'failed') {
      throw new AtelierError('BAD_REQUEST', `The download of ${e.d.filename || 'this file'} is ${e.d.state}: start it again instead.`);
    }
    if (this.disposed) throw new AtelierError('INTERNAL', 'Downloads are shut down.');
    e.d.error = null;
    e.d.received = this.partSize(e);
    this.setState(e, 'queued');
    this.launch(e);
    return this.copy(e);
  }

  /** Stops the transfer and deletes the partial file and its state. */
  cancel(id: string): Download {
    const e = this.get(id);
    if (e.d.state === 'cancelled') return this.copy(e);
    if (e.d.state === 'done') throw new AtelierError('BAD_REQUEST', `${e.d.filename} is already downloaded; remove it from the list instead.`);
    if (e.current) {
      this.stop(e.current, 'cancel');
      this.setState(e, 'cancelled'); // the files go once the transfer has let go of them (see stopped)
    } else {
      this.deleteFiles(e);
      this.setState(e, 'cancelled');
    }
    return this.copy(e);
  }

  /** Forgets a finished, failed or cancelled download (a failed one's partial file goes too). */
  remove(id: string): boolean {
    const e = this.entries.get(id);
    if (!e) return false;
    if (ACTIVE.has(e.d.state) || e.running) {
      throw new AtelierError('BAD_REQUEST', `The download of ${e.d.filename || 'this file'} is ${e.d.state}: cancel it first.`);
    }
    this.deleteFiles(e);
    this.entries.delete(id);
    return true;
  }

  /** Resolves once the download has stopped moving: done, failed, cancelled or paused. */
  async whenSettled(id: string): Promise<Download> {
    const e = this.get(id);
    while (e.running) await e.running;
    return this.copy(e);
  }

  /** Aborts every transfer, leaving it 'paused' and resumable by the next instance. */
  async dispose(): Promise<void> {
    this.disposed = true;
    const running: Promise<void>[] = [];
    for (const e of this.entries.values()) {
      if (e.current) this.stop(e.current, 'dispose');
      if (e.running) running.push(e.running);
    }
    await Promise.allSettled(running);
  }

  // ---- the transfer ----

  /** Queues a run behind any run still unwinding (a pause then an immediate resume). */
  private launch(e: Entry): void {
    const r: Run = { ctl: new AbortController(), stop: null };
    e.current = r;
    const p: Promise<void> = (e.running ?? Promise.resolve())
      .then(() => this.run(e, r))
      .finally(() => {
        if (e.running === p) e.running = null;
      });
    e.running = p;
  }

  private stop(r: Run, why: StopReason): void {
    if (!r.stop || why === 'cancel') r.stop = why; // a cancel after a pause still deletes
    r.ctl.abort();
  }

  private async run(e: Entry, r: Run): Promise<void> {
    const signal = r.ctl.signal;
    try {
      if (signal.aborted) throw new AtelierError('CANCELLED', 'Stopped.');
      this.setState(e, 'downloading');
      const hash = await this.transfer(e, signal);
      await this.finish(e, hash, signal);
    } catch (err) {
      if (r.stop) this.stopped(e, r, r.stop);
      else this.fail(e, err);
    } finally {
      if (e.current === r) e.current = null;
    }
  }

  /**
   * Attempts until the whole file is on disk. Dropped connections and server errors are retried
   * with a Range request from what is on disk; the count of retries starts over whenever an
   * attempt brought new bytes, so a long download on a flaky line is not failed for drops it
   * survived, while a server that stops giving bytes fails after maxRetries.
   * Returns the sha256 computed while writing when one response carried the whole file.
   */
  private async transfer(e: Entry, signal: AbortSignal): Promise<string | null> {
    let failures = 0;
    let restarts = 0;
    for (;;) {
      const before = this.partSize(e);
      try {
        return await this.attempt(e, signal);
      } catch (err) {
        if (signal.aborted) throw err;
        if (err instanceof Restart) {
          if (++restarts > MAX_RESTARTS) throw new AtelierError('INTERNAL', `The server keeps answering with the wrong part of ${e.d.filename || 'the file'}; try again later or use another link.`);
          this.log(e, `${err.message}; restarting from byte 0`);
          this.truncatePart(e);
          continue;
        }
        if (!(err instanceof Retryable)) throw err;
        if (this.partSize(e) > before) failures = 0;
        if (failures >= this.maxRetries) throw this.gaveUp(e, err, failures);
        const wait = this.opts.retryDelay?.(failures) ?? Math.min(10_000, 500 * 2 ** failures);
        failures++;
        this.log(e, `${err.message}; retry ${failures} of ${this.maxRetries} in ${wait} ms from byte ${this.partSize(e)}`);
        await sleepFor(wait, signal);
      }
    }
  }

  private gaveUp(e: Entry, err: Error, retries: number): AtelierError {
    const got = this.partSize(e);
    const of = e.d.total !== null ? ` of ${size(e.d.total)}` : '';
    const kept = got > 0 ? `${size(got)}${of} arrived and are kept. Resume continues from there.` : 'Nothing arrived yet; Resume tries again.';
    return new AtelierError('INTERNAL', `The download of ${e.d.filename || 'the file'} stopped after ${retries} retries (${err.message}): ${kept}`);
  }

  /** One request and its body, written at the offset the server confirms. */
  private async attempt(e: Entry, signal: AbortSignal): Promise<string | null> {
    const offset = this.partSize(e);
    if (e.d.total !== null && offset > e.d.total) throw new Restart(`the partial file (${offset} bytes) is larger than the file (${e.d.total} bytes)`);
    e.d.received = offset;
    e.samples = [];
    if (e.d.total !== null && offset > 0 && offset === e.d.total) return null; // all there (stopped while verifying): hash from disk
    if (e.d.total !== null) this.checkDisk(e, e.d.total - offset);

    const ctl = new AbortController();
    const onAbort = () => ctl.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    let stalled = false;
    let timer: NodeJS.Timeout | null = null;
    const stallMs = this.opts.stallTimeoutMs ?? 60_000;
    const arm = () => {
      if (timer) clearTimeout(timer);
      timer = setTimeout(() => {
        stalled = true;
        ctl.abort();
      }, stallMs);
    };
    try {
      arm();
      const { res, hops } = await this.request(e, offset, ctl.signal, () => stalled);
      try {
        if (res.status === 416 && offset > 0 && this.completeAt(res, offset)) {
          e.d.total = offset;
          return null;
        }
        const plan = this.readHeaders(e, res, hops, offset);
        if (plan.start === 0 && offset > 0) {
          this.log(e, `the server answered ${res.status} to a Range request from byte ${offset} (it ignores ranges, or the file changed); restarting from byte 0`);
        }
        if (plan.total !== null) this.checkDisk(e, plan.total - plan.start);
        return await this.writeBody(e, res, plan, { signal, stalled: () => stalled, arm });
      } finally {
        if (!res.bodyUsed) await res.body?.cancel().catch(() => {});
      }
    } finally {
      if (timer) clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      ctl.abort();
    }
  }

  /**
   * GET with redirects followed here rather than by fetch: Hugging Face puts the LFS sha256
   * (`x-linked-etag`) and size on its redirect to the CDN, and fetch would drop those headers.
   */
  private async request(e: Entry, offset: number, signal: AbortSignal, stalled: () => boolean): Promise<{ res: Response; hops: Headers[] }> {
    const headers: Record<string, string> = { 'accept-encoding': 'identity', 'user-agent': 'Atelier' };
    if (offset > 0) {
      headers.range = `bytes=${offset}-`;
      if (e.validator) headers['if-range'] = e.validator;
    }
    const hops: Headers[] = [];
    let url = e.d.fetchUrl;
    for (let i = 0; ; i++) {
      let res: Response;
      try {
        res = await this.fetchImpl(url, { headers, signal, redirect: 'manual' });
      } catch (err) {
        if (signal.aborted && !stalled()) throw err;
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        throw new Retryable(stalled() ? 'the server did not answer' : `could not reach ${new URL(url).host} (${[cause?.code, cause?.message ?? (err as Error).message].filter(Boolean).join(': ')})`);
      }
      const location = res.headers.get('location');
      if (res.status >= 300 && res.status < 400 && location) {
        hops.push(res.headers);
        await res.body?.cancel().catch(() => {});
        if (i >= MAX_REDIRECTS) throw new AtelierError('BAD_REQUEST', `The link redirects more than ${MAX_REDIRECTS} times; open it in a browser to find the file's own link.`);
        const next = new URL(location, url);
        if (next.protocol !== 'http:' && next.protocol !== 'https:') throw new AtelierError('BAD_REQUEST', `The link redirects to a ${next.protocol} address, which Atelier does not download from.`);
        url = next.toString();
        continue;
      }
      return { res, hops };
    }
  }

  /** Status, byte range, size, name, validator and published checksum of a response; throws for what cannot be written. */
  private readHeaders(e: Entry, res: Response, hops: Headers[], offset: number): { start: number; end: number | null; total: number | null; hash: boolean } {
    this.statusError(e, res, offset);
    const all = [...hops, res.headers];
    const linkedSize = all.map((h) => Number(h.get('x-linked-size'))).find((n) => Number.isSafeInteger(n) && n > 0) ?? null;
    let start = 0;
    let end: number | null;
    let total: number | null;
    if (res.status === 206) {
      const cr = parseContentRange(res.headers.get('content-range'));
      if (!cr) throw new Restart(`the server answered 206 without a usable Content-Range (${res.headers.get('content-range') ?? 'none'})`);
      if (cr.start !== offset) throw new Restart(`the server sent bytes from ${cr.start} for a request from byte ${offset}`);
      if (e.d.total !== null && cr.total !== null && cr.total !== e.d.total) throw new Restart(`the file's size changed from ${e.d.total} to ${cr.total} bytes`);
      start = cr.start;
      end = cr.end + 1;
      total = cr.total ?? e.d.total;
    } else {
      const len = res.headers.get('content-length');
      total = len !== null && /^\d+$/.test(len.trim()) ? Number(len) : linkedSize;
      end = total;
    }
    const source = this.sourceSha(all);
    if (source) this.learnSha(e, source, start > 0);
    if (!e.named) this.nameFromServer(e, res.headers.get('content-disposition'));
    const etag = res.headers.get('etag');
    const validator = etag && !/^W\//i.test(etag.trim()) ? etag.trim() : res.headers.get('last-modified');
    if (start === 0 || validator) e.validator = validator;
    e.d.total = total;
    e.d.received = start;
    this.flush(e);
    return { start, end, total, hash: start === 0 };
  }

  /** A 416 to a Range from the end of the file (`Content-Range: bytes *\/N`, N = what is on disk): nothing was missing. */
  private completeAt(res: Response, offset: number): boolean {
    const m = /^\s*bytes\s+\*\/(\d+)\s*$/i.exec(res.headers.get('content-range') ?? '');
    return !!m && Number(m[1]) === offset;
  }

  private statusError(e: Entry, res: Response, offset: number): void {
    const s = res.status;
    if (s === 200 || s === 206) return;
    const name = e.d.filename || 'The file';
    const host = (() => {
      try {
        return new URL(res.url || e.d.fetchUrl).host;
      } catch {
        return 'the server';
      }
    })();
    if (s === 416 && offset > 0) throw new Restart(`the server refused the range from byte ${offset} (416)`);
    if (s === 401 || s === 403) {
      throw new AtelierError(
        'BAD_REQUEST',
        `${host} answered ${s}: ${name} needs a login or token: this model is gated or private. Accept its terms on the model's page, download it in a browser, and add it from disk.`,
      );
    }
    if (s === 404 || s === 410) throw new AtelierError('NOT_FOUND', `${name} was not found at ${redact(e.d.fetchUrl)} (${host} answered ${s}): check the link.`);
    if (s === 408 || s === 429 || s >= 500) throw new Retryable(`${host} answered ${s}${res.statusText ? ` ${res.statusText}` : ''}`);
    throw new AtelierError('BAD_REQUEST', `${host} refused the download of ${name}: HTTP ${s}${res.statusText ? ` ${res.statusText}` : ''}.`);
  }

  /** Hugging Face's `x-linked-etag` from any hop; a plain ETag only where the hop is Hugging Face's (others' ETags are not content hashes). */
  private sourceSha(all: Headers[]): string | null {
    for (const h of all) {
      const linked = parseShaHeader(h.get('x-linked-etag'));
      if (linked) return linked;
      if (h.get('x-repo-commit')) {
        const etag = parseShaHeader(h.get('etag'));
        if (etag) return etag;
      }
    }
    return null;
  }

  private learnSha(e: Entry, sha: string, appending: boolean): void {
    if (e.d.checksumSource === 'user') {
      if (sha !== e.d.sha256) this.log(e, `the source publishes sha256 ${sha.slice(0, 12)}…, not the given ${e.d.sha256!.slice(0, 12)}…; checking against the given one`);
      return;
    }
    if (e.d.sha256 && e.d.sha256 !== sha && appending) throw new Restart('the published sha256 changed (the file was replaced)');
    e.d.sha256 = sha;
    e.d.checksumSource = 'source';
  }

  private nameFromServer(e: Entry, disposition: string | null): void {
    const raw = contentDispositionName(disposition);
    const name = raw ? sanitizeFilename(raw) : '';
    if (!name) {
      throw new AtelierError('BAD_REQUEST', `The server did not name the file and the link does not end in .safetensors: give a file name ending in .safetensors.`);
    }
    if (!/\.safetensors$/i.test(name)) {
      throw new AtelierError(
        'NOT_A_MODEL',
        `The server sends ${name}, not a .safetensors file: Atelier downloads only safetensors files, because pickle checkpoints can run code when loaded. If it is a safetensors file under another name, give a file name ending in .safetensors.`,
      );
    }
    e.d.filename = name;
    e.named = true;
  }

  private async writeBody(
    e: Entry,
    res: Response,
    plan: { start: number; end: number | null; hash: boolean },
    run: { signal: AbortSignal; stalled: () => boolean; arm: () => void },
  ): Promise<string | null> {
    const hash: Hash | null = plan.hash ? createHash('sha256') : null;
    const file = this.partPath(e.d.id);
    let overflow = false;
    let pos = plan.start;
    const fh = await this.writeOp(e, () => fsp.open(file, plan.start === 0 ? 'w' : 'r+'));
    try {
      if (plan.start > 0) await this.writeOp(e, () => fh.truncate(plan.start));
      const reader = res.body?.getReader();
      while (reader) {
        let chunk: Uint8Array;
        try {
          const r = await reader.read();
          if (r.done) break;
          chunk = r.value;
        } catch (err) {
          if (run.signal.aborted) throw err;
          if (run.stalled()) throw new Retryable(`no data for ${duration(this.opts.stallTimeoutMs ?? 60_000)}`);
          const cause = (err as { cause?: { message?: string } }).cause;
          throw new Retryable(`the connection dropped: ${cause?.message ?? (err as Error).message}`);
        }
        run.arm();
        if (plan.end !== null && pos + chunk.length > plan.end) {
          overflow = true;
          await reader.cancel().catch(() => {});
          break;
        }
        let off = 0;
        while (off < chunk.length) {
          const { bytesWritten } = await this.writeOp(e, () => fh.write(chunk, off, chunk.length - off, pos + off));
          off += bytesWritten;
        }
        hash?.update(chunk);
        pos += chunk.length;
        this.progress(e, pos);
      }
      if (!overflow) await this.writeOp(e, () => fh.sync());
    } finally {
      await fh.close().catch(() => {});
    }
    e.d.received = pos;
    if (overflow) {
      this.truncatePart(e, true);
      throw new AtelierError(
        'INTERNAL',
        `The download of ${e.d.filename || 'the file'} was stopped: the server sent more than the ${plan.end! - plan.start} bytes it announced, so what arrived cannot be trusted. The partial file was deleted; try again later or use another link.`,
      );
    }
    if (plan.end !== null && pos < plan.end) throw new Retryable(`the connection dropped after ${size(pos)} of ${size(plan.end)}`);
    if (e.d.total === null) e.d.total = pos;
    return hash ? hash.digest('hex') : null;
  }

  /** File writes: a full disk is the user's to fix (DISK_FULL, partial kept), anything else is ours. */
  private async writeOp<T>(e: Entry, op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      if (isDiskFull(err)) {
        const got = this.partSize(e);
        throw new AtelierError(
          'DISK_FULL',
          `The disk filled up while downloading ${e.d.filename || 'the file'}: ${size(got)}${e.d.total !== null ? ` of ${size(e.d.total)}` : ''} arrived and are kept. Free some space, then Resume.`,
        );
      }
      throw new AtelierError('INTERNAL', `Could not write the download to ${this.opts.workDir}: ${(err as Error).message}`);
    }
  }

  /** Refuses to begin what would not fit, rather than filling the disk and failing at 95 %. */
  private checkDisk(e: Entry, remaining: number): void {
    let free: number;
    try {
      free = this.opts.freeBytes ? this.opts.freeBytes(this.opts.workDir) : (() => {
        const s = fs.statfsSync(this.opts.workDir);
        return Number(s.bavail) * Number(s.bsize);
      })();
    } catch (err) {
      this.log(e, `cannot tell the free space of ${this.opts.workDir} (${(err as Error).message}); going on`);
      return;
    }
    const need = Math.max(0, remaining) + DISK_MARGIN;
    if (need > free) {
      throw new AtelierError(
        'DISK_FULL',
        `Not enough disk space for ${e.d.filename || 'the download'}: ${gb(Math.max(0, remaining))} still to download needs ${gb(need)} free on this disk (with room to spare), but only ${gb(free)} are free. Free some space, then Resume.`,
      );
    }
  }

  // ---- verification and placement ----

  private async finish(e: Entry, streamedHash: string | null, signal: AbortSignal): Promise<void> {
    const part = this.partPath(e.d.id);
    this.setState(e, 'verifying');
    const name = e.d.filename || 'The file';
    try {
      readSafetensorsHeader(part);
    } catch (err) {
      if (!(err instanceof NotSafetensorsError)) throw err;
      const what = describeNotSafetensors(part, err.message);
      this.truncatePart(e, true);
      throw new AtelierError(
        'NOT_A_MODEL',
        `${name} is ${what}, not a safetensors model. Atelier loads only .safetensors files, because pickle checkpoints (.ckpt, .pt, .bin) can run code when loaded. The download was deleted.`,
      );
    }
    if (e.d.sha256) {
      const got = streamedHash ?? (await hashFile(part, signal));
      if (signal.aborted) throw new AtelierError('CANCELLED', 'Stopped.');
      if (got !== e.d.sha256) {
        this.truncatePart(e, true);
        const whose = e.d.checksumSource === 'user' ? 'the sha256 you gave' : 'the sha256 the source publishes';
        throw new AtelierError(
          'INTERNAL',
          `${name} arrived damaged: its sha256 is ${got.slice(0, 12)}…, but ${whose} is ${e.d.sha256.slice(0, 12)}…. The download was deleted; try again.`,
        );
      }
    }
    if (signal.aborted) throw new AtelierError('CANCELLED', 'Stopped.');
    const dest = await this.place(e, part);
    e.d.path = dest;
    try {
      this.opts.onPlaced?.(dest);
    } catch (err) {
      fs.rmSync(dest, { force: true });
      e.d.path = null;
      const code: ErrorCode = err instanceof AtelierError ? err.code : 'INTERNAL';
      throw new AtelierError(code, (err as Error)?.message ?? String(err));
    }
    e.d.received = e.d.total ?? e.d.received;
    this.log(e, `done: ${dest}`);
    this.setState(e, 'done');
  }

  /** Rename into the library (same volume: atomic); across volumes, copy to a temp name there first. */
  private async place(e: Entry, part: string): Promise<string> {
    fs.mkdirSync(this.opts.destDir, { recursive: true });
    const dest = this.freeName(e.d.filename || 'model.safetensors');
    try {
      fs.renameSync(part, dest);
    } catch (err) {
      if ((err as { code?: string }).code !== 'EXDEV') throw err;
      const tmp = `${dest}${TEMP_MARK}${randomBytes(6).toString('hex')}`;
      try {
        await fsp.copyFile(part, tmp);
        const fd = fs.openSync(tmp, 'r+');
        try {
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        fs.renameSync(tmp, dest);
      } catch (copyErr) {
        fs.rmSync(tmp, { force: true });
        if (isDiskFull(copyErr)) throw new AtelierError('DISK_FULL', `The model folder's disk is full: ${e.d.filename} (${size(this.partSize(e))}) is kept in the downloads folder. Free some space, then Resume.`);
        throw copyErr;
      }
      fs.rmSync(part, { force: true });
    }
    return dest;
  }

  /** `name.safetensors`, or `name (2).safetensors` … when that is taken: a download never replaces a model. */
  private freeName(filename: string): string {
    const base = filename.replace(/\.safetensors$/i, '');
    const ext = filename.slice(base.length);
    for (let i = 1; ; i++) {
      const candidate = path.join(this.opts.destDir, i === 1 ? filename : `${base} (${i})${ext}`);
      if (!fs.existsSync(candidate)) return candidate;
    }
  }

  // ---- state ----

  private stopped(e: Entry, r: Run, why: StopReason): void {
    if (e.current !== r && why !== 'cancel') {
      this.log(e, 'stopped; a resumed run takes over');
      return;
    }
    if (why === 'cancel') {
      this.deleteFiles(e);
      this.log(e, 'cancelled');
      this.setState(e, 'cancelled');
      return;
    }
    e.d.received = this.partSize(e);
    this.log(e, `paused at byte ${e.d.received}`);
    this.setState(e, 'paused');
  }

  private fail(e: Entry, err: unknown): void {
    const error =
      err instanceof AtelierError
        ? { code: err.code, message: err.message }
        : isDiskFull(err)
          ? { code: 'DISK_FULL', message: `The disk is full: ${e.d.filename || 'the download'} could not be saved. Free some space, then Resume.` }
          : { code: 'INTERNAL', message: `The download of ${e.d.filename || 'the file'} failed: ${(err as Error)?.message ?? String(err)}` };
    e.d.error = error;
    e.d.received = this.partSize(e);
    this.log(e, `failed (${error.code}): ${error.message}`);
    this.setState(e, 'failed');
  }

  private setState(e: Entry, state: DownloadState): void {
    e.d.state = state;
    if (state !== 'downloading') {
      e.d.bytesPerSec = 0;
      e.d.etaSeconds = null;
    }
    e.d.updatedAt = this.nowIso();
    if (state !== 'cancelled') this.flush(e);
    this.emit(e, true);
  }

  /** Speed over the last ~1.5 s; events at most 4 a second; the state file at least every 2 s. */
  private progress(e: Entry, received: number): void {
    const t = performance.now();
    e.d.received = received;
    const last = e.samples[e.samples.length - 1];
    if (!last || t - last.t >= 100) e.samples.push({ t, bytes: received }); // a sample per 100 ms is plenty at 100 MB/s
    while (e.samples.length > 2 && e.samples[1].t <= t - RATE_WINDOW_MS) e.samples.shift();
    const first = e.samples[0];
    const dt = t - first.t;
    if (dt >= 200) {
      e.d.bytesPerSec = Math.round(((received - first.bytes) * 1000) / dt);
      e.d.etaSeconds = e.d.total !== null && e.d.bytesPerSec > 0 ? Math.ceil((e.d.total - received) / e.d.bytesPerSec) : null;
    }
    if (t - e.lastFlush >= FLUSH_EVERY_MS) {
      e.d.updatedAt = this.nowIso();
      this.flush(e);
    }
    if (t - e.lastEmit >= EMIT_EVERY_MS) this.emit(e);
  }

  private flush(e: Entry): void {
    e.lastFlush = performance.now();
    const data: Persisted = { ...e.d, validator: e.validator, named: e.named };
    try {
      writeFileAtomic(this.jsonPath(e.d.id), JSON.stringify(data, null, 1));
    } catch (err) {
      this.log(e, `cannot save the download state: ${(err as Error).message}`);
    }
  }

  private emit(e: Entry, force = false): void {
    const t = performance.now();
    if (!force && t - e.lastEmit < EMIT_EVERY_MS) return;
    e.lastEmit = t;
    try {
      this.opts.onChanged?.(this.copy(e));
    } catch (err) {
      this.log(e, `onChanged threw: ${(err as Error).message}`);
    }
  }

  /** Back from the state files: what was moving when the app stopped is 'paused', with `received` from the bytes really on disk. */
  private reload(): void {
    for (const name of fs.readdirSync(this.opts.workDir)) {
      const file = path.join(this.opts.workDir, name);
      if (name.includes(TEMP_MARK)) {
        fs.rmSync(file, { force: true }); // a state file half-written when the app stopped
        continue;
      }
      const m = /^([0-9a-f]{12})\.json$/.exec(name);
      if (!m) continue;
      let p: Persisted;
      try {
        p = JSON.parse(fs.readFileSync(file, 'utf8'));
        if (p.id !== m[1] || typeof p.fetchUrl !== 'string' || typeof p.state !== 'string') throw new Error('not a download state file');
      } catch (err) {
        this.opts.log?.(`downloads: ${file}: ignored (${(err as Error).message})`);
        continue;
      }
      const { validator, named, ...d } = p;
      const e: Entry = {
        d: { ...d, bytesPerSec: 0, etaSeconds: null, error: d.error ?? null, path: d.path ?? null },
        validator: validator ?? null,
        named: !!named,
        current: null,
        running: null,
        lastEmit: 0,
        lastFlush: 0,
        samples: [],
      };
      if (e.d.state !== 'done') e.d.received = this.partSize(e);
      if (ACTIVE.has(e.d.state)) e.d.state = 'paused';
      if (e.d.state === 'cancelled') {
        this.deleteFiles(e);
        continue;
      }
      this.entries.set(e.d.id, e);
    }
  }

  private get(id: string): Entry {
    const e = this.entries.get(id);
    if (!e) throw new AtelierError('NOT_FOUND', `No download with id ${id}.`);
    return e;
  }

  private copy(e: Entry): Download {
    return { ...e.d, error: e.d.error ? { ...e.d.error } : null };
  }

  private partPath(id: string): string {
    return path.join(this.opts.workDir, `${id}.part`);
  }

  private jsonPath(id: string): string {
    return path.join(this.opts.workDir, `${id}.json`);
  }

  private partSize(e: Entry): number {
    try {
      return fs.statSync(this.partPath(e.d.id)).size;
    } catch {
      return 0;
    }
  }

  /** Empties the partial file (a restart), or deletes it (what arrived cannot be used). */
  private truncatePart(e: Entry, remove = false): void {
    const part = this.partPath(e.d.id);
    if (remove) fs.rmSync(part, { force: true });
    else if (fs.existsSync(part)) fs.truncateSync(part, 0);
    e.d.received = 0;
  }

  private deleteFiles(e: Entry): void {
    fs.rmSync(this.partPath(e.d.id), { force: true });
    fs.rmSync(this.jsonPath(e.d.id), { force: true });
  }

  private nowIso(): string {
    return (this.opts.now?.() ?? new Date()).toISOString();
  }

  private log(e: Entry, line: string): void {
    this.opts.log?.(`downloads: ${e.d.id}${e.d.filename ? ` ${e.d.filename}` : ''}: ${line}`);
  }
}
