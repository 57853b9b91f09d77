/**
 * Bad input, end to end: every contract method is fed what it must refuse (wrong types, missing
 * fields, 100 KB strings, -1 / NaN / Infinity / 1e308, sizes of 0, 1 and 100000 px), and the
 * handlers that take bytes or paths are fed corrupt and truncated PNG/JPEG/WebP, pixel bombs,
 * hostile PNG metadata, pickles, truncated and lying safetensors, LoRAs of the wrong family and
 * captions with control characters. Each case must be answered by a specific error (the right
 * code, a message that names the field or says what is wrong; never INTERNAL), and nothing else
 * may change: SQLite tables, settings, files under the data dir, the model list, the job queue,
 * the runtime and the events sent to clients are compared before and after.
 *
 * The real services run on a fresh data dir; the real Python worker is used only for what only
 * it decodes or checks (an image whose pixel data is garbage, LoRAs that fit by name but not by
 * shape). Generated cases use fast-check with fixed seeds. The figures are printed at the end.
 */
import Database from 'better-sqlite3';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import fc from 'fast-check';
import type { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ImageMetadata, METHOD_NAMES, methods, type GenerateParamsInput, type MethodName } from '../../src/shared/contract';
import { ERROR_CODES, type ErrorCode } from '../../src/shared/errors';
import { createServices, type Services } from '../../src/main/services';
import { memoryBackend } from '../../src/main/services/settings/settings';
import { PNG_SIGNATURE, pngChunk, solidPng } from '../../src/main/lib/png';
import { heartPng, makePng, tmpDir } from '../helpers';
import { python, ROOT } from './python';

const HAS_FIFO = process.platform !== 'win32';

const KB100 = 'x'.repeat(100_000);
const b64 = (b: Buffer) => b.toString('base64');

// ------------------------------------------------------------------ accounting

type Kind = 'refused' | 'skipped' | 'noted' | 'neutralized';
interface CaseResult {
  group: string;
  name: string;
  kind: Kind;
  /** Why it is lost: accepted, wrong code, vague message, crashed, hung. */
  wrong: string[];
  /** What changed that should not have. */
  changed: string[];
}
const results: CaseResult[] = [];

function record(group: string, name: string, kind: Kind, wrong: string[], changed: string[]): CaseResult {
  const r = { group, name, kind, wrong, changed };
  results.push(r);
  return r;
}

const lostIn = (group: string) =>
  results.filter((r) => r.group === group && (r.wrong.length || r.changed.length)).map((r) => `${r.name}: ${[...r.wrong, ...r.changed.map((c) => `changed ${c}`)].join('; ')}`);

const short = (v: unknown, n = 200) => {
  const s = typeof v === 'string' ? v : JSON.stringify(v) ?? String(v);
  return s.length > n ? `${s.slice(0, n)}… (${s.length} chars)` : s;
};

/** A hang guard, not a timing threshold: a case that never answers is reported as lost, not waited for forever. */
function answerWithin<T>(p: Promise<T>, what: string, ms = 180_000): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([p, new Promise<T>((_, reject) => (t = setTimeout(() => reject(new Error(`${what}: no answer (hung)`)), ms)))]).finally(() => clearTimeout(t));
}

// ------------------------------------------------------------------ services and snapshots

let services: Services;
let dataDir: string;
let fixtures: string;
let ro: Database.Database;
const events: { name: string; payload: unknown }[] = [];
const handlerCalls = new Map<string, number>();

interface Fixtures {
  modelId: string;
  genId: string;
  imageId: string;
  boardId: string;
  datasetId: string;
  datasetImage: string;
  emptyDatasetId: string;
  asset: string;
  mask: string;
  garbageAsset: string;
  loras: Record<'sdxlTe2' | 'sdxl2048' | 'sd2' | 'sd15w768' | 'metaSdxl' | 'lycoris', string>;
  controlnetId: string;
}
let F: Fixtures;

interface Snapshot {
  tables: Record<string, string>;
  files: Record<string, string>;
  settings: string;
  models: string;
  jobs: Record<string, string>;
  downloads: string;
  runtime: string;
}

function snapshot(): Snapshot {
  const tables: Record<string, string> = {};
  const names = ro.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name").all() as { name: string }[];
  for (const { name } of names) {
    const rows = ro.prepare(`SELECT * FROM "${name}"`).all();
    tables[name] = `${rows.length} rows ${createHash('sha256').update(JSON.stringify(rows)).digest('hex').slice(0, 16)}`;
  }
  const files: Record<string, string> = {};
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const abs = path.join(dir, e.name);
      const rel = path.relative(dataDir, abs).split(path.sep).join('/');
      if (/^atelier\.db(-wal|-shm)?$/.test(rel)) continue; // the tables above are its content
      if (e.isDirectory()) {
        files[`${rel}/`] = 'dir';
        walk(abs);
      } else {
        const st = fs.statSync(abs);
        files[rel] = st.size <= 4 << 20 ? `${st.size} ${createHash('sha256').update(fs.readFileSync(abs)).digest('hex').slice(0, 16)}` : `${st.size}`;
      }
    }
  };
  walk(dataDir);
  const jobs: Record<string, string> = {};
  for (const j of services.jobs.list()) jobs[j.id] = `${j.state} ${j.error?.code ?? ''}`;
  const rt = services.runtime.status();
  return {
    tables,
    files,
    settings: JSON.stringify(services.settings.get()),
    models: JSON.stringify(services.models.list()),
    jobs,
    downloads: JSON.stringify(services.downloads.list()),
    runtime: `${rt.state} restarts=${rt.restarts} pid=${services.runtime.workerPid ?? '-'}`,
  };
}

/** What differs, in words; `ignoreJobs`: jobs the case itself queued (their failure is the answer). */
function diff(a: Snapshot, b: Snapshot, ignoreJobs: string[] = []): string[] {
  const out: string[] = [];
  const rec = (what: string, x: Record<string, string>, y: Record<string, string>) => {
    for (const k of new Set([...Object.keys(x), ...Object.keys(y)])) {
      if (ignoreJobs.includes(k)) continue;
      if (x[k] !== y[k]) out.push(`${what} ${k}: ${x[k] ?? '(none)'} -> ${y[k] ?? '(none)'}`);
    }
  };
  rec('table', a.tables, b.tables);
  rec('file', a.files, b.files);
  rec('job', a.jobs, b.jobs);
  for (const k of ['settings', 'models', 'downloads', 'runtime'] as const) if (a[k] !== b[k]) out.push(`${k}: ${short(a[k], 120)} -> ${short(b[k], 120)}`);
  return out;
}

function eventsSince(mark: number, allowJobs: string[] = []): string[] {
  return events
    .slice(mark)
    .filter((e) => !(e.name === 'jobs.changed' && allowJobs.includes((e.payload as { id: string }).id)))
    .map((e) => `event ${e.name} ${short(e.payload, 80)}`);
}

/** The checks every error answer must pass: a known code that is not INTERNAL, and a message a person can act on. */
function vetError(error: { code: string; message: string }, codes: ErrorCode[], re: RegExp | null): string[] {
  const wrong: string[] = [];
  if (!(ERROR_CODES as readonly string[]).includes(error.code)) wrong.push(`unknown code ${error.code}`);
  if (!codes.includes(error.code as ErrorCode)) wrong.push(`code ${error.code} (expected ${codes.join('|')}): ${short(error.message)}`);
  if (error.code === 'INTERNAL' || /Something went wrong inside Atelier/.test(error.message)) wrong.push(`generic internal error: ${short(error.message)}`);
  if (typeof error.message !== 'string' || error.message.trim().length < 12) wrong.push(`no message: ${short(error.message)}`);
  else if (error.message.length > 5000) wrong.push(`message of ${error.message.length} chars (echoes the input?)`);
  if (re && !re.test(error.message)) wrong.push(`message does not say what is wrong (${re}): ${short(error.message)}`);
  return wrong;
}

// ------------------------------------------------------------------ case runners

/**
 * One request that must be refused by a handler: the full snapshot is compared around it.
 * `codes`: the acceptable codes; `re`: what the message must say.
 */
async function refused(group: string, name: string, method: string, input: unknown, codes: ErrorCode | ErrorCode[], re: RegExp | null): Promise<CaseResult> {
  const before = snapshot();
  const mark = events.length;
  const wrong: string[] = [];
  try {
    const r = await answerWithin(services.dispatch(method, input), `${method} ${name}`);
    if (r.ok) wrong.push(`accepted: ${short(r.value)}`);
    else wrong.push(...vetError(r.error, [codes].flat(), re));
  } catch (err) {
    wrong.push(`threw: ${(err as Error).message}`);
  }
  wrong.push(...eventsSince(mark));
  return record(group, name, 'refused', wrong, diff(before, snapshot()));
}

/**
 * A request the dispatcher must refuse from its schema alone (BAD_REQUEST naming the field, the
 * handler never called). No snapshot per case: the caller takes one around its batch.
 */
async function schemaRefused(group: string, name: string, method: string, input: unknown, fieldPath: string | null): Promise<CaseResult> {
  const mark = events.length;
  const calls = handlerCalls.get(method) ?? 0;
  const wrong: string[] = [];
  try {
    const r = await answerWithin(services.dispatch(method, input), `${method} ${name}`);
    if (r.ok) wrong.push(`accepted: ${short(r.value)}`);
    else {
      wrong.push(...vetError(r.error, ['BAD_REQUEST'], new RegExp(`^Invalid ${method.replace('.', '\\.')} request: \\S.*: \\S`)));
      if (fieldPath !== null && !r.error.message.includes(`${fieldPath}:`) && !r.error.message.includes(`${fieldPath}.`)) wrong.push(`message does not name ${fieldPath}: ${short(r.error.message)}`);
    }
  } catch (err) {
    wrong.push(`threw: ${(err as Error).message}`);
  }
  if ((handlerCalls.get(method) ?? 0) !== calls) wrong.push('the handler ran');
  wrong.push(...eventsSince(mark));
  return record(group, name, 'refused', wrong, []);
}

/** Runs a batch of schema-level cases between two snapshots; a difference marks every case of the batch. */
async function batch(run: () => Promise<void>): Promise<void> {
  const from = results.length;
  const before = snapshot();
  await run();
  const changed = diff(before, snapshot());
  if (changed.length) for (const r of results.slice(from)) r.changed.push(...changed);
}

/** A fast-check property whose cases are recorded: on failure the lost cases are shown, not only the counterexample. */
async function property(group: string, run: () => Promise<void>): Promise<void> {
  let failure: unknown = null;
  try {
    await run();
  } catch (err) {
    failure = err;
  }
  expect(lostIn(group)).toEqual([]);
  if (failure) throw failure;
}

// ------------------------------------------------------------------ schema helpers

type Schema = z.ZodType & { def: { type: string; innerType?: z.ZodType; shape?: Record<string, z.ZodType> }; shape?: Record<string, z.ZodType> };

/** The object shape of a method's input (through defaults), or null when it is not an object. */
function shapeOf(schema: z.ZodType): Record<string, z.ZodType> | null {
  let s = schema as Schema;
  for (let i = 0; i < 5 && s.def.innerType && !s.def.shape; i++) s = s.def.innerType as Schema;
  return s.def.shape ?? null;
}

/** What the dispatcher would do with this input. */
const isValid = (method: MethodName, input: unknown) => methods[method].input.safeParse(input ?? {}).success;

type Path = (string | number)[];
const DELETE = Symbol('delete');

function pathsOf(v: unknown, prefix: Path = []): Path[] {
  if (!v || typeof v !== 'object') return [];
  const out: Path[] = [];
  for (const [k, x] of Object.entries(v)) {
    const p = [...prefix, Array.isArray(v) ? Number(k) : k];
    out.push(p, ...pathsOf(x, p));
  }
  return out;
}

function withPath(base: unknown, p: Path, value: unknown): unknown {
  const copy = structuredClone(base) as Record<string | number, unknown>;
  let o = copy as Record<string | number, unknown>;
  for (const k of p.slice(0, -1)) o = o[k] as Record<string | number, unknown>;
  const last = p[p.length - 1];
  if (value === DELETE) {
    if (Array.isArray(o)) o.splice(Number(last), 1);
    else delete o[last];
  } else o[last] = value;
  return copy;
}

// ------------------------------------------------------------------ bytes built by hand

function ihdr(width: number, height: number, colorType = 2): Buffer {
  const b = Buffer.alloc(13);
  b.writeUInt32BE(width >>> 0, 0);
  b.writeUInt32BE(height >>> 0, 4);
  b[8] = 8;
  b[9] = colorType;
  return b;
}
const IEND = pngChunk('IEND', Buffer.alloc(0));

/** A PNG whose header declares any size, with a few bytes of pixel data: never allocate the pixels. */
function declaredPng(width: number, height: number): Buffer {
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr(width, height)), pngChunk('IDAT', zlib.deflateSync(Buffer.alloc(64))), IEND]);
}

/** Well-formed chunks with valid checksums, but pixel data that is not a zlib stream: only a decoder can tell. */
function garbagePixelsPng(): Buffer {
  const junk = Buffer.alloc(512);
  for (let i = 0; i < junk.length; i++) junk[i] = (i * 131 + 17) & 0xff;
  return Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr(64, 64)), pngChunk('IDAT', junk), IEND]);
}

/** `png` with extra chunks inserted before its first IDAT. */
function withChunks(png: Buffer, ...chunks: Buffer[]): Buffer {
  const at = png.indexOf('IDAT') - 4;
  return Buffer.concat([png.subarray(0, at), ...chunks, png.subarray(at)]);
}
const tEXt = (key: string, text: Buffer | string) => pngChunk('tEXt', Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0]), Buffer.isBuffer(text) ? text : Buffer.from(text, 'latin1')]));
const zTXt = (key: string, raw: Buffer) => pngChunk('zTXt', Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0, 0]), zlib.deflateSync(raw)]));
const iTXt = (key: string, body: Buffer) => pngChunk('iTXt', Buffer.concat([Buffer.from(key, 'latin1'), Buffer.from([0, 0, 0, 0, 0]), body]));

function flip(b: Buffer, at: number): Buffer {
  const c = Buffer.from(b);
  c[at] ^= 0xff;
  return c;
}

/** A JPEG skeleton: SOI, SOF0 with the size, SOS, scan bytes, EOI. */
function jpeg(width: number, height: number, complete = true): Buffer {
  const sof = Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, height >> 8, height & 255, width >> 8, width & 255, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
  const sos = Buffer.from([0xff, 0xda, 0x00, 0x0c, 0x03, 1, 0, 2, 0x11, 3, 0x11, 0, 0x3f, 0]);
  return Buffer.concat([Buffer.from([0xff, 0xd8]), sof, sos, Buffer.alloc(200, 0x55), complete ? Buffer.from([0xff, 0xd9]) : Buffer.alloc(0)]);
}

function webp(fourcc: string, payload: Buffer, riffSizeLie = 0): Buffer {
  const chunk = Buffer.concat([Buffer.from(fourcc, 'latin1'), Buffer.alloc(4), payload]);
  chunk.writeUInt32LE(payload.length, 4);
  const head = Buffer.from('RIFF\0\0\0\0WEBP', 'latin1');
  head.writeUInt32LE(4 + chunk.length + riffSizeLie, 4);
  return Buffer.concat([head, chunk]);
}
function webpVp8x(width: number, height: number): Buffer {
  const p = Buffer.alloc(10);
  p.writeUIntLE(width - 1, 4, 3);
  p.writeUIntLE(height - 1, 7, 3);
  return webp('VP8X', p);
}
function webpVp8(width: number, height: number): Buffer {
  const p = Buffer.alloc(10);
  p.set([0x9d, 0x01, 0x2a], 3);
  p.writeUInt16LE(width & 0x3fff, 6);
  p.writeUInt16LE(height & 0x3fff, 8);
  return webp('VP8 ', p);
}

const DTYPE_BYTES: Record<string, number> = { F16: 2, F32: 4, BF16: 2, I64: 8, U8: 1 };

/** A safetensors file from tensor shapes (zero data), with optional lies in its length field or a cut. */
function safetensors(tensors: Record<string, { dtype?: string; shape: number[]; offsets?: unknown }>, metadata: Record<string, string> = {}, lie: { lenDelta?: number; cut?: number; rawHeader?: string } = {}): Buffer {
  const header: Record<string, unknown> = { __metadata__: metadata };
  let off = 0;
  for (const [k, t] of Object.entries(tensors)) {
    const dtype = t.dtype ?? 'F16';
    if (t.offsets !== undefined) {
      // A lie: no bytes are written for it.
      header[k] = { dtype, shape: t.shape, data_offsets: t.offsets };
      continue;
    }
    const n = t.shape.reduce((a, b) => a * b, 1) * (DTYPE_BYTES[dtype] ?? 2);
    header[k] = { dtype, shape: t.shape, data_offsets: [off, off + n] };
    off += n;
  }
  const json = Buffer.from(lie.rawHeader ?? JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length + (lie.lenDelta ?? 0)));
  const all = Buffer.concat([len, json, Buffer.alloc(off)]);
  return all.subarray(0, all.length - (lie.cut ?? 0));
}

const ATTN2_K = 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k';
/** A kohya LoRA whose cross-attention layer takes text of `width` (768: SD 1.5, 1024: SD 2.x, 2048: SDXL). */
function kohyaLora(width: number, extra: Record<string, { shape: number[] }> = {}, metadata: Record<string, string> = {}): Buffer {
  return safetensors(
    {
      [`${ATTN2_K}.lora_down.weight`]: { shape: [4, width] },
      [`${ATTN2_K}.lora_up.weight`]: { shape: [32, 4] },
      [`${ATTN2_K}.alpha`]: { dtype: 'F32', shape: [] },
      ...extra,
    },
    metadata,
  );
}

function write(name: string, data: Buffer | string): string {
  const p = path.join(fixtures, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, data);
  return p;
}

// ------------------------------------------------------------------ setup

beforeAll(async () => {
  dataDir = tmpDir('atelier-badinput-');
  fixtures = tmpDir('atelier-badinput-fixtures-');
  services = createServices({
    dataDir,
    appRoot: ROOT,
    settingsBackend: memoryBackend({}),
    shell: 'web',
    version: 'test',
    pythonOverride: python(),
    log: () => {},
  });
  const demo = services.models.list().find((m) => m.source === 'embedded' && m.kind === 'checkpoint');
  if (!demo) throw new Error('the embedded demo model is missing from resources/models');

  // A history entry (a real PNG through the history store), a board holding it, canvas assets.
  const gen = services.history.addGeneration({
    backend: 'local', mode: 'txt2img', prompt: 'a red circle', negativePrompt: '', modelId: demo.id, modelName: demo.name, modelHash: null,
    sampler: 'Euler', steps: 4, cfg: 7, seed: 7, width: 64, height: 64, batch: 1, strength: null, control: null, loras: [],
    device: null, timings: {}, costUsd: null, params: { prompt: 'a red circle' }, images: [{ data: makePng(64, 64), seed: 7 }],
  });
  const board = services.history.createBoard('fixtures');
  services.history.addToBoard(board.id, [gen.id]);
  const asset = services.history.putAsset(makePng(64, 64, [10, 20, 30])).path;
  const mask = services.history.putAsset(solidPng(64, 64, [255])).path;
  const garbageAsset = services.history.putAsset(garbagePixelsPng()).path;

  // A dataset with one captioned image.
  const ds = services.datasets.create('fixture set', 'fxt');
  const added = services.datasets.addFiles(ds.id, [
    { name: 'heart.png', data: b64(heartPng([250, 250, 250])) },
    { name: 'heart.txt', data: b64(Buffer.from('a pink heart')) },
  ]);

  // LoRAs (a valid import each: a LoRA of another family is wrong only when used), linked into the library.
  const link = async (name: string, data: Buffer) => {
    const r = await services.dispatch('models.import', { path: write(`models/${name}`, data), mode: 'link' });
    if (!r.ok) throw new Error(`fixture ${name}: ${r.error.message}`);
    return (r.value as { id: string }).id;
  };
  const loras = {
    sdxlTe2: await link('sdxl-te2.safetensors', kohyaLora(2048, { 'lora_te2_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight': { shape: [4, 1280] } })),
    sdxl2048: await link('sdxl-2048.safetensors', kohyaLora(2048)),
    sd2: await link('sd2-1024.safetensors', kohyaLora(1024)),
    sd15w768: await link('sd15-768.safetensors', kohyaLora(768)),
    metaSdxl: await link('says-sdxl.safetensors', kohyaLora(128, {}, { ss_base_model_version: 'sdxl_base_v1-0' })),
    lycoris: await link('lycoris-mix.safetensors', kohyaLora(128, { 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q.hada_w1_a': { shape: [4, 128] } })),
  };
  const controlnetId = await link('fake-controlnet.safetensors', safetensors({ 'control_model.input_blocks.0.0.weight': { shape: [2, 2] } }));
  // Hashes are cached on first use: compute them now, so a refused job does not write them mid-case.
  for (const id of [demo.id, controlnetId, ...Object.values(loras)]) await services.models.ensureHash(id);

  const empty = services.datasets.create('empty set');
  F = { modelId: demo.id, genId: gen.id, imageId: gen.images[0].id, boardId: board.id, datasetId: ds.id, datasetImage: added.added[0], emptyDatasetId: empty.id, asset, mask, garbageAsset, loras, controlnetId };
  expect(added.added).toEqual(['heart.png']);

  ro = new Database(path.join(dataDir, 'atelier.db'), { readonly: true, fileMustExist: true });
  services.hub.subscribe((name, payload) => events.push({ name, payload }));
  // Count handler calls: a request refused by its schema must never reach one.
  const table = services.handlers as unknown as Record<string, (input: unknown) => unknown>;
  for (const m of METHOD_NAMES) {
    const h = table[m];
    table[m] = (input: unknown) => {
      handlerCalls.set(m, (handlerCalls.get(m) ?? 0) + 1);
      return h(input);
    };
  }
}, 300_000);

afterAll(async () => {
  const lost = results.filter((r) => r.wrong.length || r.changed.length);
  const changed = results.filter((r) => r.changed.length);
  const answered = results.filter((r) => !r.wrong.length);
  const groups = [...new Set(results.map((r) => r.group))];
  const per = groups.map((g) => {
    const rs = results.filter((r) => r.group === g);
    const l = rs.filter((r) => r.wrong.length || r.changed.length).length;
    return `${g} ${rs.length}${l ? ` (lost ${l})` : ''}`;
  });
  const kinds = (['refused', 'skipped', 'noted', 'neutralized'] as Kind[]).map((k) => `${results.filter((r) => r.kind === k && !r.wrong.length).length} ${k}`);
  console.log(`bad-input groups: ${per.join(', ')}`);
  console.log(`bad-input answers: ${kinds.join(', ')}`);
  console.log(`bad-input: ${results.length} cases tried, ${answered.length} answered with a specific error, ${changed.length} changed anything (lost ${lost.length})`);
  ro?.close();
  await services?.dispose();
  for (const d of [dataDir, fixtures]) if (d) fs.rmSync(d, { recursive: true, force: true });
  // Nothing in any input may reach the object prototype.
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
});

// ------------------------------------------------------------------ valid examples (mutated, never sent as they are)

function validExamples(): Partial<Record<MethodName, unknown>> {
  const A = `assets/ab/${'ab'.repeat(32)}.png`;
  const gen = {
    mode: 'inpaint', backend: 'local', prompt: 'a cat', negativePrompt: 'blurry', modelId: 'm1', sampler: 'Euler', steps: 4, cfg: 7, seed: 1,
    width: 64, height: 64, batch: 1, strength: 0.5, initImageId: 'i1',
    canvas: { frame: { x: 0, y: 0, width: 64, height: 64 }, init: A, mask: A, maskBlur: 8, maskOnly: false, maskPadding: 32, fill: 'edge' },
    control: { type: 'canny', modelId: 'c1', image: A, scale: 1, start: 0, end: 1 },
    cloud: { size: '1024x1024', quality: '', style: '', overBudgetOk: false },
    loras: [{ modelId: 'l1', weight: 0.8 }],
    noCache: false,
  };
  const filters = { query: 'cat', model: 'm', lora: 'l', sampler: 'Euler', backend: 'local', favorite: true, from: '2024-01-01', to: '2025-01-01', boardId: 'b1' };
  const config = {
    rank: 8, alpha: 8, lr: 1e-4, steps: 10, batch: 1, resolution: 512, seed: 0, optimizer: 'adamw', textEncoder: false, lrScheduler: 'constant', warmupSteps: 0,
    mixedPrecision: 'auto', gradientCheckpointing: false, checkpointEvery: 5, sampleEvery: 5, samplePrompts: ['a heart'], sampleSteps: 4, sampleSeed: 0,
  };
  const id = { id: 'x1' };
  return {
    'settings.update': {
      theme: 'dark', pythonPath: '', modelDirs: ['/tmp'], memoryMode: 'auto', previewEvery: 2, defaults: { sampler: 'Euler a', steps: 20, cfg: 7, width: 512, height: 512 },
      lastModelId: '', cloudBudgetUsd: 0, styleSuffix: '', blockedTerms: ['x'], firstRunDone: false, presetOverrides: { preview: { steps: 4, sampler: 'Euler' } },
    },
    'models.import': { path: '/models/x.safetensors', mode: 'link' },
    'downloads.start': { url: 'https://example.com/x.safetensors', sha256: 'a'.repeat(64), filename: 'x.safetensors' },
    'downloads.pause': id, 'downloads.resume': id, 'downloads.cancel': id, 'downloads.remove': id,
    'cloud.setKey': { key: `sk-${'a'.repeat(40)}` },
    'cloud.estimate': { model: 'gpt-image-1', size: '1024x1024', quality: '', n: 1 },
    'history.list': { ...filters, limit: 60, offset: 0, withTotal: true },
    'history.count': filters,
    'history.get': id,
    'history.setFavorite': { ids: ['g1'], favorite: true },
    'history.export': { id: 'g1', format: 'json' },
    'history.readMetadata': { png: b64(makePng(8, 8)) },
    'boards.create': { name: 'b' },
    'boards.rename': { id: 'b1', name: 'b' },
    'boards.delete': id,
    'boards.add': { id: 'b1', generationIds: ['g1'] },
    'boards.remove': { id: 'b1', generationIds: ['g1'] },
    'boards.export': { id: 'b1', folder: '/tmp/out' },
    'history.delete': { ids: ['g1'] },
    'runtime.provision': { repair: false },
    'jobs.submit': gen,
    'assets.put': { png: b64(makePng(8, 8)) },
    'canvas.canny': { image: A, low: 100, high: 200, width: 64, height: 64 },
    'jobs.submitMany': { items: [gen] },
    'jobs.move': { id: 'j1', index: 0 },
    'jobs.retry': id,
    'jobs.cancel': id,
    'datasets.get': id,
    'datasets.create': { name: 'd', trigger: 'fxt' },
    'datasets.update': { id: 'd1', name: 'd', trigger: 'fxt' },
    'datasets.delete': id,
    'datasets.importFolder': { id: 'd1', folder: '/tmp/in' },
    'datasets.addFiles': { id: 'd1', files: [{ name: 'a.png', data: 'AAAAAAAA' }] },
    'datasets.setCaption': { id: 'd1', file: 'a.png', caption: 'a heart' },
    'datasets.removeImage': { id: 'd1', file: 'a.png' },
    'training.preset': { modelId: 'm1' },
    'training.start': { name: 'lora', datasetId: 'd1', modelId: 'm1', config },
    'training.get': id, 'training.pause': id, 'training.resume': id, 'training.cancel': id, 'training.delete': id,
  };
}

/** Values of the wrong type or out of every range; each is sent only where the schema refuses it. */
const WRONG: [string, unknown][] = [
  ['null', null],
  ['true', true],
  ['7', 7],
  ['"x"', 'x'],
  ['""', ''],
  ['100 KB string', KB100],
  ['[]', []],
  ['{}', {}],
  ['-1', -1],
  ['0', 0],
  ['1', 1],
  ['100000', 100000],
  ['NaN', Number.NaN],
  ['Infinity', Number.POSITIVE_INFINITY],
  ['-Infinity', Number.NEGATIVE_INFINITY],
  ['1e308', 1e308],
  ['0.5', 0.5],
  ['2^53', 2 ** 53],
  ['"5"', '5'],
];

// ================================================================== the cases

describe('every contract method, fed what its schema refuses', () => {
  it('has a valid example for every method with fields (so the field sweeps cover it), and each example is valid', () => {
    const ex = validExamples();
    for (const [m, input] of Object.entries(ex)) expect(isValid(m as MethodName, input), `${m}: ${JSON.stringify(methods[m as MethodName].input.safeParse(input).error?.issues)}`).toBe(true);
    const missing = METHOD_NAMES.filter((m) => Object.keys(shapeOf(methods[m].input) ?? {}).length && !(m in ex));
    expect(missing, 'methods with fields but no example: add one to validExamples()').toEqual([]);
  });

  it('fast-check: arbitrary values that fail each method\'s schema get BAD_REQUEST naming what is wrong, and reach no handler', async () => {
    const ex = validExamples();
    let seed = 20250101;
    await property('fuzz', async () => {
      for (const m of METHOD_NAMES) {
        const shape = shapeOf(methods[m].input);
        const keys = Object.keys(shape ?? {});
        const paths = ex[m] ? pathsOf(ex[m]) : [];
        const arbs: fc.Arbitrary<unknown>[] = [
          fc.jsonValue({ maxDepth: 2 }),
          fc.anything({ maxDepth: 2, withNullPrototype: true, withObjectString: true }),
          keys.length
            ? fc.record(Object.fromEntries(keys.map((k) => [k, fc.jsonValue({ maxDepth: 1 })])), { requiredKeys: [] })
            : fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), fc.jsonValue({ maxDepth: 1 }), { minKeys: 1, maxKeys: 3 }),
        ];
        if (paths.length) arbs.push(fc.tuple(fc.constantFrom(...paths), fc.jsonValue({ maxDepth: 1 })).map(([p, v]) => withPath(ex[m], p, v)));
        const arb = fc.oneof(...arbs).filter((x) => !isValid(m, x));
        await batch(async () => {
          await fc.assert(
            fc.asyncProperty(arb, async (input) => {
              const r = await schemaRefused('fuzz', `${m} ${short(input, 60)}`, m, input, null);
              return !r.wrong.length;
            }),
            { seed: seed++, numRuns: 5, endOnFailure: true },
          );
        });
      }
    });
  });

  it('every field of every method, set to a wrong type, a 100 KB string, -1, NaN, Infinity, 1e308, 0, 1 or 100000: BAD_REQUEST naming that field', async () => {
    const ex = validExamples();
    for (const [m, base] of Object.entries(ex) as [MethodName, unknown][]) {
      await batch(async () => {
        for (const p of pathsOf(base)) {
          for (const [label, v] of WRONG) {
            const input = withPath(base, p, v);
            if (isValid(m, input)) continue;
            await schemaRefused('fields', `${m} ${p.join('.')} = ${label}`, m, input, p.join('.'));
          }
        }
      });
    }
    expect(lostIn('fields')).toEqual([]);
  });

  it('every required field left out: BAD_REQUEST naming it', async () => {
    const ex = validExamples();
    for (const m of METHOD_NAMES) {
      const base = ex[m] ?? {};
      await batch(async () => {
        const paths = ex[m] ? pathsOf(base) : Object.keys(shapeOf(methods[m].input) ?? {}).map((k) => [k]);
        for (const p of paths) {
          const input = withPath(base, p, DELETE);
          if (isValid(m, input)) continue;
          // A removed array element leaves the array too short: the array is what the message names.
          const named = typeof p[p.length - 1] === 'number' ? p.slice(0, -1) : p;
          await schemaRefused('missing', `${m} without ${p.join('.')}`, m, input, named.join('.'));
        }
      });
    }
    expect(lostIn('missing')).toEqual([]);
  });

  it('hostile shapes: unknown keys, prototype keys, non-objects, deep nesting, oversized arrays', async () => {
    const ex = validExamples();
    const deep = JSON.parse(`${'['.repeat(5000)}${']'.repeat(5000)}`);
    await batch(async () => {
      for (const m of METHOD_NAMES) {
        const base = (ex[m] ?? {}) as Record<string, unknown>;
        const cases: [string, unknown][] = [
          ['a __proto__ key', JSON.parse(`{"__proto__": {"polluted": true}, ${JSON.stringify(base).slice(1, -1) || '"x": 1'}}`)],
          ['a constructor key', { ...base, constructor: { prototype: { polluted: true } } }],
          ['an unknown key', { ...base, sneaky: 1 }],
          ['a string', 'app.info'],
          ['an array', [base]],
          ['a number', 42],
          ['5000 nested arrays', deep],
        ];
        for (const [label, input] of cases) if (!isValid(m, input)) await schemaRefused('shapes', `${m} ${label}`, m, input, null);
      }
      const g = ex['jobs.submit'] as GenerateParamsInput;
      const big: [string, MethodName, unknown, string][] = [
        ['501 jobs at once', 'jobs.submitMany', { items: Array.from({ length: 501 }, () => g) }, 'items'],
        ['10001 ids to delete', 'history.delete', { ids: Array.from({ length: 10001 }, (_, i) => `g${i}`) }, 'ids'],
        ['10001 favourites', 'history.setFavorite', { ids: Array.from({ length: 10001 }, (_, i) => `g${i}`), favorite: true }, 'ids'],
        ['10001 generations onto a board', 'boards.add', { id: 'b', generationIds: Array.from({ length: 10001 }, (_, i) => `g${i}`) }, 'generationIds'],
        ['17 LoRAs', 'jobs.submit', { ...g, loras: Array.from({ length: 17 }, (_, i) => ({ modelId: `l${i}`, weight: 1 })) }, 'loras'],
        ['the same LoRA twice', 'jobs.submit', { ...g, loras: [{ modelId: 'l1' }, { modelId: 'l1' }] }, 'loras.1.modelId'],
        ['201 dropped files', 'datasets.addFiles', { id: 'd', files: Array.from({ length: 201 }, (_, i) => ({ name: `${i}.png`, data: 'AAAA' })) }, 'files'],
        ['65 model folders', 'settings.update', { modelDirs: Array.from({ length: 65 }, (_, i) => `/m${i}`) }, 'modelDirs'],
        ['1001 blocked terms', 'settings.update', { blockedTerms: Array.from({ length: 1001 }, (_, i) => `t${i}`) }, 'blockedTerms'],
        ['9 sample prompts', 'training.start', { name: 'x', datasetId: 'd', modelId: 'm', config: { samplePrompts: Array.from({ length: 9 }, () => 'p') } }, 'config.samplePrompts'],
      ];
      for (const [label, m, input, field] of big) await schemaRefused('shapes', `${m} ${label}`, m, input, field);
    });
    expect(lostIn('shapes')).toEqual([]);
  });
});

describe('absurd sizes and 100 KB prompts', () => {
  it('generation, canvas, canny, settings and training sizes of 0, 1, 100000 px (and -1, NaN, Infinity, 1e308, not a multiple of 8)', async () => {
    const g: GenerateParamsInput = { prompt: 'a cat', modelId: F.modelId, seed: 1, steps: 4 };
    const sizes: [string, unknown][] = [['0', 0], ['1', 1], ['100000', 100000], ['-1', -1], ['NaN', Number.NaN], ['Infinity', Number.POSITIVE_INFINITY], ['1e308', 1e308], ['63', 63], ['4097', 4097], ['500 (not a multiple of 8)', 500]];
    const canvas = { frame: { x: 0, y: 0, width: 64, height: 64 }, init: F.asset, mask: F.mask };
    await batch(async () => {
      for (const [label, v] of sizes) {
        for (const side of ['width', 'height']) {
          await schemaRefused('sizes', `jobs.submit ${side} ${label}`, 'jobs.submit', { ...g, [side]: v }, side);
          await schemaRefused('sizes', `jobs.submitMany item 1 ${side} ${label}`, 'jobs.submitMany', { items: [g, { ...g, [side]: v }] }, `items.1.${side}`);
          await schemaRefused('sizes', `canvas frame ${side} ${label}`, 'jobs.submit', { ...g, mode: 'inpaint', canvas: { ...canvas, frame: { ...canvas.frame, [side]: v } } }, `canvas.frame.${side}`);
          await schemaRefused('sizes', `canvas.canny ${side} ${label}`, 'canvas.canny', { image: F.asset, width: 64, height: 64, [side]: v }, side);
          await schemaRefused('sizes', `settings default ${side} ${label}`, 'settings.update', { defaults: { sampler: 'Euler', steps: 20, cfg: 7, width: 512, height: 512, [side]: v } }, `defaults.${side}`);
        }
        await schemaRefused('sizes', `training resolution ${label}`, 'training.start', { name: 'x', datasetId: F.datasetId, modelId: F.modelId, config: { resolution: v } }, 'config.resolution');
        await schemaRefused('sizes', `cloud size ${label}x${label}`, 'jobs.submit', { ...g, backend: 'cloud', modelId: 'gpt-image-1', cloud: { size: `${v}x${v}` } }, 'cloud.size');
      }
    });
    expect(lostIn('sizes')).toEqual([]);
  });

  it('prompts and other texts of 100 KB', async () => {
    const g: GenerateParamsInput = { prompt: 'a cat', modelId: F.modelId, seed: 1 };
    const emoji = '🎨'.repeat(50_000);
    const cases: [string, MethodName, unknown, string][] = [
      ['prompt of 100 KB', 'jobs.submit', { ...g, prompt: KB100 }, 'prompt'],
      ['prompt of 100 KB of emoji', 'jobs.submit', { ...g, prompt: emoji }, 'prompt'],
      ['prompt of 100 KB of spaces', 'jobs.submit', { ...g, prompt: ' '.repeat(100_000) }, 'prompt'],
      ['negative prompt of 100 KB', 'jobs.submit', { ...g, negativePrompt: KB100 }, 'negativePrompt'],
      ['prompt of 100 KB in the 3rd of 3 jobs', 'jobs.submitMany', { items: [g, g, { ...g, prompt: KB100 }] }, 'items.2.prompt'],
      ['model id of 100 KB', 'jobs.submit', { ...g, loras: [{ modelId: KB100 }] }, 'loras.0.modelId'],
      ['search of 100 KB', 'history.list', { query: KB100 }, 'query'],
      ['count search of 100 KB', 'history.count', { query: KB100 }, 'query'],
      ['board name of 100 KB', 'boards.create', { name: KB100 }, 'name'],
      ['dataset name of 100 KB', 'datasets.create', { name: KB100 }, 'name'],
      ['trigger of 100 KB', 'datasets.create', { name: 'd', trigger: KB100 }, 'trigger'],
      ['caption of 100 KB', 'datasets.setCaption', { id: F.datasetId, file: F.datasetImage, caption: KB100 }, 'caption'],
      ['sample prompt of 100 KB', 'training.start', { name: 'x', datasetId: F.datasetId, modelId: F.modelId, config: { samplePrompts: [KB100] } }, 'config.samplePrompts.0'],
      ['LoRA name of 100 KB', 'training.start', { name: KB100, datasetId: F.datasetId, modelId: F.modelId }, 'name'],
      ['style suffix of 100 KB', 'settings.update', { styleSuffix: KB100 }, 'styleSuffix'],
      ['python path of 100 KB', 'settings.update', { pythonPath: KB100 }, 'pythonPath'],
      ['model path of 100 KB', 'models.import', { path: KB100, mode: 'link' }, 'path'],
      ['URL of 100 KB', 'downloads.start', { url: `https://example.com/${KB100}` }, 'url'],
      ['API key of 100 KB', 'cloud.setKey', { key: KB100 }, 'key'],
      ['export folder of 100 KB', 'boards.export', { id: F.boardId, folder: KB100 }, 'folder'],
      ['import folder of 100 KB', 'datasets.importFolder', { id: F.datasetId, folder: KB100 }, 'folder'],
      ['image path of 100 KB', 'canvas.canny', { image: KB100 }, 'image'],
      ['id of 100 KB', 'history.get', { id: KB100 }, 'id'],
    ];
    await batch(async () => {
      for (const [label, m, input, field] of cases) await schemaRefused('prompts', label, m, input, field);
    });
    expect(lostIn('prompts')).toEqual([]);
  });
});

describe('images: corrupt, truncated, pixel bombs, hostile metadata', () => {
  const good = () => makePng(64, 64);

  it('assets.put refuses what is not a whole PNG it can use, and stores nothing', async () => {
    const png = good();
    const idat = png.indexOf('IDAT') - 4;
    const cases: [string, Buffer, RegExp][] = [
      ['an HTML page named .png', Buffer.from('<!DOCTYPE html><html><body>Sign in</body></html>'), /not a valid PNG \(not a PNG file\)/],
      ['a PNG cut inside its pixel data', png.subarray(0, png.length - 20), /truncated PNG/],
      ['a PNG cut after its header', png.subarray(0, idat), /truncated PNG \(no end chunk\)/],
      ['a PNG cut inside its header', png.subarray(0, 30), /not a valid PNG/],
      ['a PNG with a bad pixel-data checksum', flip(png, png.length - 13), /"IDAT" chunk fails its checksum/],
      ['a PNG with a bad header checksum', flip(png, 29), /"IHDR" chunk fails its checksum/],
      ['a PNG whose header declares 30000×30000', declaredPng(30000, 30000), /30000×30000: larger than Atelier handles/],
      ['a PNG whose header declares 2^31×2^31', declaredPng(2 ** 31, 2 ** 31), /larger than Atelier handles/],
      ['a PNG whose header declares 100000×1', declaredPng(100000, 1), /100000×1: larger than Atelier handles/],
      ['a PNG whose header declares 1×100000', declaredPng(1, 100000), /1×100000: larger than Atelier handles/],
      ['a PNG of 0×0', declaredPng(0, 0), /zero size/],
      ['a PNG without pixel data', Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr(64, 64)), IEND]), /without image data/],
      ['a JPEG', jpeg(64, 64), /not a PNG/],
      ['a WebP', webpVp8x(64, 64), /not a PNG/],
      ['a pickle', Buffer.concat([Buffer.from([0x80, 0x02, 0x7d, 0x71]), Buffer.alloc(64)]), /not a PNG/],
      ['8 zero bytes', Buffer.alloc(8), /not a PNG/],
      ['only the PNG signature', PNG_SIGNATURE, /not a valid PNG/],
    ];
    for (const [label, bytes, re] of cases) await refused('assets', `assets.put ${label}`, 'assets.put', { png: b64(bytes) }, 'BAD_REQUEST', re);
    await refused('assets', 'assets.put base64 that is not base64', 'assets.put', { png: '!!!!****~~~~----' }, 'BAD_REQUEST', /not a valid PNG/);
    await refused('assets', 'assets.put a zero-byte file', 'assets.put', { png: '' }, 'BAD_REQUEST', /png: /);
    expect(lostIn('assets')).toEqual([]);
  });

  it('fast-check: a valid PNG cut anywhere, or with any byte changed, is refused by assets.put', async () => {
    const png = good();
    const cut = fc.integer({ min: 0, max: png.length - 1 }).map((n) => ({ label: `cut to ${n} bytes`, bytes: png.subarray(0, n) }));
    const mangled = fc
      .tuple(fc.integer({ min: 0, max: png.length - 1 }), fc.integer({ min: 1, max: 255 }))
      .map(([at, x]) => {
        const b = Buffer.from(png);
        b[at] ^= x;
        return { label: `byte ${at} ^ ${x}`, bytes: b };
      });
    await property('png-property', () => fc.assert(
      fc.asyncProperty(fc.oneof(cut, mangled), async ({ label, bytes }) => {
        const r = await refused('png-property', `assets.put ${label}`, 'assets.put', { png: b64(bytes) }, 'BAD_REQUEST', /not a valid PNG|larger than Atelier handles|\bpng: /);
        return !r.wrong.length && !r.changed.length;
      }),
      { seed: 4242, numRuns: 60, endOnFailure: true },
    ));
  });

  it('history.readMetadata: what is not a PNG is refused; hostile metadata is read without crashing or hanging, well-typed, with a note', async () => {
    const png = good();
    const refusedCases: [string, Buffer, RegExp][] = [
      ['an HTML page', Buffer.from('<!DOCTYPE html><html><body>nope</body></html>'), /not a PNG/],
      ['a JPEG', jpeg(64, 64), /not a PNG/],
      ['8 zero bytes', Buffer.alloc(8), /not a PNG/],
      ['a PNG cut inside a chunk', png.subarray(0, png.length - 20), /damaged PNG \(truncated PNG/],
      ['a PNG whose text chunk claims 4 GB', Buffer.concat([png.subarray(0, 33), Buffer.from([0xff, 0xff, 0xff, 0xf0]), Buffer.from('tEXtparameters\0x')]), /damaged PNG/],
    ];
    for (const [label, bytes, re] of refusedCases) await refused('metadata', `readMetadata ${label}`, 'history.readMetadata', { png: b64(bytes) }, 'BAD_REQUEST', re);

    const controls = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 32));
    const comfy = (g: unknown) => withChunks(png, tEXt('prompt', JSON.stringify(g)));
    const atelier = (j: unknown) => withChunks(png, tEXt('atelier', Buffer.from(JSON.stringify(j), 'utf8')));
    const hostile: [string, Buffer, { source?: string; note?: RegExp; check?: (m: z.output<typeof ImageMetadata>) => string | null }][] = [
      ['a 10 MB parameters chunk after "Steps:" (a regex would backtrack for hours)', withChunks(png, tEXt('parameters', `a cat\nSteps: 20, ${'a'.repeat(10_000_000)}`)), { source: 'a1111' }],
      ['a 10 MB chunk of unclosed <lora: tags', withChunks(png, tEXt('parameters', '<lora:a:1:'.repeat(1_000_000))), { source: 'a1111', check: (m) => (m.loras.length === 0 ? null : `${m.loras.length} LoRAs from unclosed tags`) }],
      ['a 10 MB chunk of unclosed quotes', withChunks(png, tEXt('parameters', `p\nSteps: 1, ${'a: "x, '.repeat(1_400_000)}`)), { source: 'a1111' }],
      ['a parameters chunk full of control characters', withChunks(png, tEXt('parameters', Buffer.concat([controls, Buffer.from('\nSteps: \u0000\u001b[2J, Seed: \u0007')]))), { source: 'a1111' }],
      ['Atelier JSON whose fields lie about their types', atelier({ version: 1, params: { prompt: 5, steps: 'many', cfg: null, seed: { a: 1 }, width: [64], modelName: { evil: true }, modelHash: [1], loras: 'all of them', sampler: 12 } }), { source: 'atelier', note: /damaged; left out: .*sampler.*steps.*seed.*width.*modelHash.*loras/ }],
      ['Atelier JSON with LoRAs of the wrong shape', atelier({ version: 1, params: { prompt: 'p', loras: [{ name: { x: 1 }, weight: 'heavy' }, null, 5, { name: 'ok', weight: 0.5, hash: 7 }, { name: 'fine', weight: 1 }] } }), { source: 'atelier', note: /left out: loras/, check: (m) => (m.loras.length === 1 && m.loras[0].name === 'fine' ? null : `loras ${short(m.loras)}`) }],
      ['Atelier JSON whose params are a string', withChunks(png, tEXt('atelier', '{"version":1,"params":"everything"}')), { source: 'none' }],
      ['Atelier JSON nested 100000 deep', withChunks(png, tEXt('atelier', `${'['.repeat(100_000)}${']'.repeat(100_000)}`)), { source: 'none' }],
      ['Atelier JSON that is not JSON, with A1111 text beside it', withChunks(png, tEXt('atelier', '{"params": {'), tEXt('parameters', 'a dog\nSteps: 12, Seed: 3')), { source: 'a1111', check: (m) => (m.params.steps === 12 ? null : `steps ${short(m.params.steps)}`) }],
      ['a ComfyUI graph whose KSampler has no inputs', comfy({ 1: { class_type: 'KSampler' } }), { source: 'comfyui', note: /no KSampler node/ }],
      ['a ComfyUI graph whose links point at numbers, nulls and itself', comfy({ 1: { class_type: 'KSampler', inputs: { positive: ['2', 0], negative: [null], model: ['1', 0], latent_image: ['3', 0], seed: 'x' } }, 2: 5, 3: { class_type: 'EmptyLatentImage', inputs: null } }), { source: 'comfyui', note: /prompt comes from a node|KSampler/ }],
      ['a ComfyUI graph whose LoRA loader has no inputs', comfy({ 1: { class_type: 'KSampler', inputs: { model: ['2', 0] } }, 2: { class_type: 'LoraLoader' } }), { source: 'comfyui' }],
      ['a ComfyUI graph that is an array of junk', comfy([1, 'two', null, { class_type: 7 }]), { source: 'comfyui', note: /no KSampler/ }],
      ['a zTXt chunk that inflates to 20 MB (a zip bomb)', withChunks(png, zTXt('parameters', Buffer.alloc(20_000_000, 0x41))), { source: 'none' }],
      ['an iTXt chunk of invalid UTF-8 and a text chunk without a key', withChunks(png, iTXt('parameters', Buffer.from([0xff, 0xfe, 0xc3, 0x28, 0x0a])), pngChunk('tEXt', Buffer.from('\0no key'))), { source: 'a1111' }],
      ['a model name of 1 MB', withChunks(png, tEXt('parameters', `p\nSteps: 2, Model: ${'m'.repeat(1_000_000)}`)), { source: 'a1111', note: /not in your library/ }],
    ];
    for (const [label, bytes, want] of hostile) {
      const before = snapshot();
      const mark = events.length;
      const wrong: string[] = [];
      try {
        const r = await answerWithin(services.dispatch('history.readMetadata', { png: b64(bytes) }), label);
        if (!r.ok) wrong.push(...vetError(r.error, ['BAD_REQUEST'], null));
        else {
          const parsed = ImageMetadata.safeParse(r.value);
          if (!parsed.success) wrong.push(`answer does not match the contract: ${short(parsed.error.issues)}`);
          else {
            const m = parsed.data;
            const types: Record<string, string> = { prompt: 'string', negativePrompt: 'string', sampler: 'string', modelName: 'string', steps: 'number', cfg: 'number', seed: 'number', width: 'number', height: 'number' };
            for (const [k, t] of Object.entries(types)) if (m.params[k] !== undefined && typeof m.params[k] !== t) wrong.push(`params.${k} is ${short(m.params[k], 40)}`);
            for (const l of m.loras) if (typeof l.name !== 'string' || !Number.isFinite(l.weight)) wrong.push(`lora ${short(l)}`);
            if (want.source && m.source !== want.source) wrong.push(`source ${m.source}, expected ${want.source}`);
            if (want.note && !m.notes.some((n) => want.note!.test(n))) wrong.push(`no note saying ${want.note}: ${short(m.notes)}`);
            const extra = want.check?.(m);
            if (extra) wrong.push(extra);
          }
        }
      } catch (err) {
        wrong.push(`threw: ${(err as Error).message}`);
      }
      wrong.push(...eventsSince(mark));
      record('metadata', `readMetadata ${label}`, 'noted', wrong, diff(before, snapshot()));
    }
    expect(lostIn('metadata')).toEqual([]);
  });

  const BAD_IMAGES: [string, Buffer, RegExp][] = [
    ['page.png', Buffer.from('<!DOCTYPE html><html><head><title>403</title></head></html>'), /HTML page/],
    ['cut.png', makePng(64, 64).subarray(0, 60), /truncated PNG/],
    ['crc.png', flip(makePng(64, 64), makePng(64, 64).length - 13), /fails its checksum/],
    ['bomb.png', declaredPng(30000, 30000), /30000×30000: too large/],
    ['zero.png', declaredPng(0, 0), /no pixels/],
    ['tiny.png', makePng(1, 1), /1×1: too small/],
    ['strip.png', declaredPng(100000, 1), /100000×1: too small/],
    ['nodata.png', Buffer.concat([PNG_SIGNATURE, pngChunk('IHDR', ihdr(64, 64)), IEND]), /without image data/],
    ['bomb.jpg', jpeg(30000, 30000), /30000×30000: too large/],
    ['cut.jpg', jpeg(64, 64, false), /truncated JPEG/],
    ['short-frame.jpg', Buffer.from([0xff, 0xd8, 0xff, 0xc0, 0x00, 0x02]), /damaged JPEG|truncated JPEG/],
    ['badmarker.jpg', Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x04, 0x00, 0x00, 0x13]), Buffer.alloc(40)]), /damaged JPEG \(bad marker\)/],
    ['noframe.jpg', Buffer.from([0xff, 0xd8, 0xff, 0xda, 0x00, 0x02, 0xff, 0xd9]), /without a frame header/],
    ['bomb.webp', webpVp8x(30000, 30000), /30000×30000: too large/],
    ['lossy-bomb.webp', webpVp8(16383, 16383), /16383×16383: too large/],
    ['cut.webp', webp('VP8L', Buffer.alloc(10), 5000), /truncated WebP/],
    ['odd.webp', webp('VP9 ', Buffer.alloc(20)), /WebP file Atelier cannot read/],
    ['anim.gif', Buffer.from('GIF89a\x40\x00\x40\x00', 'latin1'), /GIF/],
    ['weights.png', Buffer.concat([Buffer.from([0x80, 0x04, 0x95]), Buffer.alloc(40)]), /pickle/],
    ['notes.png', Buffer.from('these are my notes, not a picture\n'), /text file/],
    ['doc.webp', Buffer.from('%PDF-1.7\n%âãÏÓ\n1 0 obj'), /PDF/],
    ['lfs.png', Buffer.from('version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12345\n'), /Git LFS pointer/],
    ['cut.bmp', Buffer.concat([Buffer.from('BM'), Buffer.from([0xff, 0xff, 0, 0]), Buffer.alloc(30)]), /truncated BMP/],
  ];

  it('datasets.addFiles: each corrupt, truncated or bombed image is skipped with its reason, its caption is not written, the dataset is as it was', async () => {
    for (const [name, bytes, re] of BAD_IMAGES) {
      const before = snapshot();
      const mark = events.length;
      const wrong: string[] = [];
      const stem = name.replace(/\.[^.]+$/, '');
      try {
        const r = await answerWithin(
          services.dispatch('datasets.addFiles', { id: F.datasetId, files: [{ name, data: b64(bytes.length >= 3 ? bytes : Buffer.concat([bytes, Buffer.alloc(3 - bytes.length)])) }, { name: `${stem}.txt`, data: b64(Buffer.from('\u0000\u001b[31mcaption\r\n')) }] }),
          name,
        );
        if (!r.ok) wrong.push(`refused whole: ${r.error.code} ${short(r.error.message)}`);
        else {
          const v = r.value as { added: string[]; skipped: { file: string; reason: string }[] };
          if (v.added.length) wrong.push(`added ${v.added.join(', ')}`);
          const s = v.skipped.find((x) => x.file === name);
          if (!s) wrong.push(`not in skipped: ${short(v.skipped)}`);
          else if (!re.test(s.reason)) wrong.push(`reason "${s.reason}" does not match ${re}`);
        }
      } catch (err) {
        wrong.push(`threw: ${(err as Error).message}`);
      }
      wrong.push(...eventsSince(mark));
      record('datasets', `addFiles ${name}`, 'skipped', wrong, diff(before, snapshot()));
    }
    await refused('datasets', 'addFiles a zero-byte file', 'datasets.addFiles', { id: F.datasetId, files: [{ name: 'empty.png', data: '' }] }, 'BAD_REQUEST', /files\.0\.data: /);
    await refused('datasets', 'addFiles only captions', 'datasets.addFiles', { id: F.datasetId, files: [{ name: 'a.txt', data: b64(Buffer.from('\u0007bell')) }] }, 'BAD_REQUEST', /No image among the dropped files/);
    await refused('datasets', 'addFiles to a dataset that does not exist', 'datasets.addFiles', { id: '00000000-0000-0000-0000-000000000000', files: [{ name: 'a.png', data: b64(makePng(64, 64)) }] }, 'NOT_FOUND', /No dataset/);
    expect(lostIn('datasets')).toEqual([]);
  });

  it('datasets.importFolder: a folder of bad images skips every one with its reason; missing, file and empty folders are refused', async () => {
    const folder = path.join(fixtures, 'bad-images');
    fs.mkdirSync(folder, { recursive: true });
    for (const [name, bytes] of BAD_IMAGES) fs.writeFileSync(path.join(folder, name), bytes);
    fs.writeFileSync(path.join(folder, 'empty.png'), Buffer.alloc(0));
    fs.writeFileSync(path.join(folder, 'crc.txt'), 'a \u0000 caption \u001b[2J with controls');
    if (HAS_FIFO) execFileSync('mkfifo', [path.join(folder, 'pipe.png')]);
    const before = snapshot();
    const mark = events.length;
    const wrong: string[] = [];
    const r = await answerWithin(services.dispatch('datasets.importFolder', { id: F.datasetId, folder }), 'importFolder');
    if (!r.ok) wrong.push(`refused whole: ${r.error.code} ${short(r.error.message)}`);
    else {
      const v = r.value as { added: string[]; skipped: { file: string; reason: string }[] };
      if (v.added.length) wrong.push(`added ${v.added.join(', ')}`);
      for (const [name, , re] of [...BAD_IMAGES, ['empty.png', Buffer.alloc(0), /an empty file/] as [string, Buffer, RegExp]]) {
        const s = v.skipped.find((x) => x.file === name);
        if (!s || !re.test(s.reason)) wrong.push(`${name}: ${s ? `reason "${s.reason}"` : 'not skipped'}`);
      }
    }
    wrong.push(...eventsSince(mark));
    record('datasets', `importFolder of ${BAD_IMAGES.length + 1} bad images${HAS_FIFO ? ' and a FIFO' : ''}`, 'skipped', wrong, diff(before, snapshot()));

    const emptyDir = path.join(fixtures, 'empty-folder');
    fs.mkdirSync(emptyDir, { recursive: true });
    const folders: [string, string, ErrorCode, RegExp][] = [
      ['a folder that does not exist', path.join(fixtures, 'nope'), 'NOT_FOUND', /Cannot open the folder .*ENOENT/],
      ['a file', path.join(folder, 'crc.png'), 'NOT_FOUND', /is a file, not a folder/],
      ['/dev/null', '/dev/null', 'NOT_FOUND', /is a file, not a folder/],
      ['an empty folder', emptyDir, 'BAD_REQUEST', /has no image files/],
      ['a path with a NUL byte', `${folder}\u0000x`, 'NOT_FOUND', /Cannot open the folder/],
    ];
    for (const [label, p, code, re] of folders) await refused('datasets', `importFolder ${label}`, 'datasets.importFolder', { id: F.datasetId, folder: p }, code, re);
    expect(lostIn('datasets')).toEqual([]);
  });

  it('image paths that leave the library, or name nothing, are NOT_FOUND before anything runs', async () => {
    const paths = ['../../../../etc/passwd', '/etc/passwd', 'assets/../atelier.db', 'atelier.db', 'images/', 'assets/00/nothing.png', 'assets\\..\\atelier.db', 'assets/ab/\u0000.png', 'C:/Windows/win.ini', 'datasets'];
    for (const p of paths) await refused('paths', `canvas.canny ${JSON.stringify(p)}`, 'canvas.canny', { image: p }, 'NOT_FOUND', /No file .* in the library/);
    const g: GenerateParamsInput = { prompt: 'a cat', modelId: F.modelId, seed: 1, steps: 4, width: 64, height: 64 };
    const missing = `assets/00/${'0'.repeat(64)}.png`;
    await refused('paths', 'inpaint with an init asset that does not exist', 'jobs.submit', { ...g, mode: 'inpaint', canvas: { frame: { x: 0, y: 0, width: 64, height: 64 }, init: missing, mask: F.mask } }, 'NOT_FOUND', /No file assets\/00\/0+\.png/);
    await refused('paths', 'inpaint with a mask asset that does not exist', 'jobs.submit', { ...g, mode: 'inpaint', canvas: { frame: { x: 0, y: 0, width: 64, height: 64 }, init: F.asset, mask: missing } }, 'NOT_FOUND', /No file assets\/00/);
    await refused('paths', 'img2img from a history image that does not exist', 'jobs.submit', { ...g, mode: 'img2img', initImageId: 'nope' }, 'NOT_FOUND', /No image nope/);
    await refused('paths', 'ControlNet image that does not exist', 'jobs.submit', { ...g, control: { modelId: F.controlnetId, image: missing } }, 'NOT_FOUND', /No file assets\/00/);
    await refused('paths', 'settings: a model folder that does not exist', 'settings.update', { modelDirs: [path.join(fixtures, 'nope')] }, 'BAD_REQUEST', /No folder at .*nope/);
    await refused('paths', 'settings: a model folder that is a file', 'settings.update', { modelDirs: [path.join(fixtures, 'bad-images', 'crc.png')] }, 'BAD_REQUEST', /No folder at/);
    await refused('paths', 'settings: a model folder with a NUL byte', 'settings.update', { modelDirs: ['/tmp\u0000/x'] }, 'BAD_REQUEST', /No folder at/);
    await refused('paths', 'boards.export under a file', 'boards.export', { id: F.boardId, folder: path.join(fixtures, 'bad-images', 'crc.png', 'out') }, 'BAD_REQUEST', /folder: cannot create .*ENOTDIR/);
    await refused('paths', 'boards.export into /dev/null', 'boards.export', { id: F.boardId, folder: '/dev/null' }, 'BAD_REQUEST', /folder: cannot create/);
    const urls: [string, RegExp][] = [
      ['file:///etc/passwd', /Only http\(s\) links can be downloaded, not file/],
      ['javascript:alert(1)', /Only http\(s\) links can be downloaded, not javascript/],
      ['ftp://example.com/x.safetensors', /Only http\(s\) links can be downloaded, not ftp/],
      ['data:application/octet-stream;base64,AAAA', /Only http\(s\) links can be downloaded, not data/],
      ['https://example.com/models/model.ckpt', /model\.ckpt is a pickle checkpoint/],
    ];
    for (const [u, re] of urls) await refused('paths', `downloads.start ${u}`, 'downloads.start', { url: u }, 'BAD_REQUEST', re);
    await refused('paths', 'downloads.start with a path as file name', 'downloads.start', { url: 'https://example.com/x.safetensors', filename: '../../evil.safetensors' }, 'BAD_REQUEST', /filename must be a file name/);
    await refused('paths', 'downloads.start of a pickle', 'downloads.start', { url: 'https://example.com/x.ckpt', filename: 'x.ckpt' }, 'BAD_REQUEST', /must end in \.safetensors/);
    expect(lostIn('paths')).toEqual([]);
  });
});

describe('model files: pickles, truncated and lying safetensors, wrong-family LoRAs', () => {
  it('models.import refuses what is not a model, saying what it is, copying nothing', async () => {
    const base = { 'model.diffusion_model.input_blocks.0.0.weight': { shape: [2, 2] } };
    const files: [string, Buffer | null, ErrorCode, RegExp][] = [
      ['model.ckpt', Buffer.concat([Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00]), Buffer.alloc(256)]), 'NOT_A_MODEL', /model\.ckpt is a Python pickle/],
      ['zipped.ckpt', Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(256)]), 'NOT_A_MODEL', /zip archive/],
      ['pickle.safetensors', Buffer.concat([Buffer.from([0x80, 0x04, 0x95]), Buffer.alloc(256)]), 'NOT_A_MODEL', /Python pickle/],
      ['cut.safetensors', safetensors(base, {}, { cut: 4 }), 'NOT_A_MODEL', /a truncated safetensors file/],
      ['header-cut.safetensors', safetensors(base).subarray(0, 20), 'NOT_A_MODEL', /damaged safetensors file \(its header claims/],
      ['header-longer.safetensors', safetensors(base, {}, { lenDelta: 1_000_000 }), 'NOT_A_MODEL', /its header claims \d+ bytes; the whole file has/],
      ['header-2^63.safetensors', (() => { const b = safetensors(base); b.writeBigUInt64LE(2n ** 63n, 0); return b; })(), 'NOT_A_MODEL', /damaged safetensors file/],
      ['header-0.safetensors', safetensors(base, {}, { lenDelta: -safetensors(base).readUInt32LE(0) }), 'NOT_A_MODEL', /damaged safetensors file/],
      ['offsets-past-end.safetensors', safetensors({ 'model.diffusion_model.x': { dtype: 'U8', shape: [1 << 14, 1 << 14], offsets: [0, 1 << 28] } }), 'NOT_A_MODEL', /a truncated safetensors file \(\d+ of \d+ bytes\)/],
      ['offsets-disagree-with-shape.safetensors', safetensors({ 'model.diffusion_model.x': { shape: [2, 2], offsets: [0, 1 << 30] } }), 'NOT_A_MODEL', /holds 1073741824 bytes, but its shape \[2, 2\] of F16 needs 8/],
      ['offsets-negative.safetensors', safetensors({ 'model.diffusion_model.x': { shape: [2, 2], offsets: [-8, 0] } }), 'NOT_A_MODEL', /no valid data offsets/],
      ['offsets-reversed.safetensors', safetensors({ 'model.diffusion_model.x': { shape: [2, 2], offsets: [8, 0] } }), 'NOT_A_MODEL', /no valid data offsets/],
      ['offsets-strings.safetensors', safetensors({ 'model.diffusion_model.x': { shape: [2, 2], offsets: ['0', 'lots'] } }), 'NOT_A_MODEL', /no valid data offsets/],
      ['shape-lies.safetensors', safetensors({ 'model.diffusion_model.x': { dtype: 'F32', shape: [100000, 100000], offsets: [0, 8] } }), 'NOT_A_MODEL', /holds 8 bytes, but its shape \[100000, 100000\] of F32 needs/],
      ['no-shape.safetensors', safetensors({}, {}, { rawHeader: '{"lora_unet_x.lora_down.weight": {"dtype": "F16", "data_offsets": [0, 0]}}' }), 'NOT_A_MODEL', /no valid shape/],
      ['header-array.safetensors', safetensors({}, {}, { rawHeader: '[1, 2, 3]' }), 'NOT_A_MODEL', /header is not a JSON object/],
      ['header-null.safetensors', safetensors({}, {}, { rawHeader: 'null' }), 'NOT_A_MODEL', /not a safetensors file|header is not a JSON object/],
      ['header-not-json.safetensors', safetensors({}, {}, { rawHeader: '{"a": [1, 2' }), 'NOT_A_MODEL', /header is not valid JSON/],
      ['tensor-is-a-number.safetensors', safetensors({}, {}, { rawHeader: '{"lora_unet_x.lora_down.weight": 5}' }), 'NOT_A_MODEL', /is not an object/],
      ['unknown.safetensors', safetensors({ 'some.other.network.weight': { shape: [2, 2] } }), 'NOT_A_MODEL', /not a Stable Diffusion checkpoint, LoRA, ControlNet or VAE/],
      ['empty.safetensors', Buffer.alloc(0), 'NOT_A_MODEL', /only 0 bytes/],
      ['page.safetensors', Buffer.from('<!DOCTYPE html><html><body>Log in to download</body></html>'), 'NOT_A_MODEL', /a text file/],
      ['lfs.safetensors', Buffer.from('version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 2\n'), 'NOT_A_MODEL', /a text file/],
    ];
    for (const [name, bytes, code, re] of files) {
      const p = write(`bad-models/${name}`, bytes!);
      for (const mode of ['copy', 'link'] as const) await refused('models', `import (${mode}) ${name}`, 'models.import', { path: p, mode }, code, re);
    }
    const folder = (name: string, files: Record<string, string>) => {
      const dir = path.join(fixtures, 'bad-models', name);
      fs.mkdirSync(dir, { recursive: true });
      for (const [f, text] of Object.entries(files)) write(`bad-models/${name}/${f}`, text);
      return dir;
    };
    const others: [string, string, ErrorCode, RegExp][] = [
      ['a folder without model_index.json', folder('plain', { 'readme.txt': 'hi' }), 'NOT_A_MODEL', /folder without a diffusers model_index\.json/],
      ['a folder whose model_index.json is not JSON', folder('broken-index', { 'model_index.json': '{"_class_name": "StableDiffusionPipeline",' }), 'NOT_A_MODEL', /damaged model description \(its model_index\.json is not valid JSON/],
      ['a folder whose model_index.json is null', folder('null-index', { 'model_index.json': 'null' }), 'NOT_A_MODEL', /model_index\.json is not a JSON object/],
      ['a folder whose config.json is an array', folder('array-config', { 'config.json': '[1]' }), 'NOT_A_MODEL', /config\.json is not a JSON object/],
      ['a folder of another pipeline', folder('flux', { 'model_index.json': '{"_class_name": "FluxPipeline"}' }), 'NOT_A_MODEL', /folder without a diffusers model_index\.json/],
      ['a path that does not exist', path.join(fixtures, 'nope.safetensors'), 'MODEL_NOT_FOUND', /Nothing at .*nope\.safetensors/],
      ['a relative path that does not exist', 'nope/model.safetensors', 'MODEL_NOT_FOUND', /Nothing at/],
      ['a path with a NUL byte', `${fixtures}/x\u0000.safetensors`, 'MODEL_NOT_FOUND', /Nothing at/],
      ['/dev/null (a device)', '/dev/null', 'NOT_A_MODEL', /not a regular file/],
    ];
    if (HAS_FIFO) {
      const fifo = path.join(fixtures, 'bad-models', 'pipe.safetensors');
      execFileSync('mkfifo', [fifo]);
      // Opening a FIFO to read its header would block the whole process until something writes to it.
      others.push(['a FIFO named .safetensors', fifo, 'NOT_A_MODEL', /not a regular file \(a pipe, socket or device\)/]);
    }
    for (const [label, p, code, re] of others) for (const mode of ['copy', 'link'] as const) await refused('models', `import (${mode}) ${label}`, 'models.import', { path: p, mode }, code, re);
    expect(lostIn('models')).toEqual([]);
    expect(fs.existsSync(path.join(dataDir, 'models', 'imported'))).toBe(false);
  });

  it('fast-check: safetensors headers that lie (length, offsets, shapes, dtypes, cuts) are NOT_A_MODEL with the reason', async () => {
    const tensor = fc.record({
      name: fc.constantFrom('model.diffusion_model.a', `${ATTN2_K}.lora_down.weight`, 'control_model.b', 'encoder.down.c', 'x'),
      dtype: fc.constantFrom('F16', 'F32', 'BF16', 'I64', 'U8'),
      shape: fc.array(fc.integer({ min: 0, max: 6 }), { minLength: 0, maxLength: 3 }),
      // Offsets that disagree with the shape: [start, start + its size + extra], extra never 0.
      lie: fc.oneof(fc.constant(null), fc.record({ start: fc.integer({ min: -4, max: 1 << 20 }), extra: fc.integer({ min: -3, max: 1 << 20 }).filter((x) => x !== 0) })),
    });
    const file = fc.record({ tensors: fc.array(tensor, { minLength: 1, maxLength: 4 }), lenDelta: fc.integer({ min: -16, max: 64 }), cut: fc.integer({ min: 0, max: 64 }) });
    let n = 0;
    await property('safetensors-property', () => fc.assert(
      fc.asyncProperty(file, async (f) => {
        const t: Record<string, { dtype: string; shape: number[]; offsets?: unknown }> = {};
        for (const x of f.tensors) {
          const size = x.shape.reduce((a, b) => a * b, 1) * DTYPE_BYTES[x.dtype];
          t[x.name] = { dtype: x.dtype, shape: x.shape, ...(x.lie ? { offsets: [x.lie.start, x.lie.start + size + x.lie.extra] } : {}) };
        }
        // Every file lies somewhere (a truthful one of these names would be a model): at least a cut of 1 byte.
        const lies = f.lenDelta !== 0 || f.cut !== 0 || f.tensors.some((x) => x.lie && t[x.name].offsets);
        const p = write(`prop-models/${n++}.safetensors`, safetensors(t, {}, { lenDelta: f.lenDelta, cut: lies ? f.cut : 1 }));
        const r = await refused('safetensors-property', `${short(f, 150)}`, 'models.import', { path: p, mode: 'link' }, ['NOT_A_MODEL'], /\.safetensors is a (damaged|truncated) safetensors file/);
        return !r.wrong.length && !r.changed.length;
      }),
      { seed: 777, numRuns: 40, endOnFailure: true },
    ));
  });

  it('LoRAs of the wrong family (and other wrong kinds) are refused before anything is queued', async () => {
    const g: GenerateParamsInput = { prompt: 'a cat', modelId: F.modelId, seed: 1, steps: 4, width: 64, height: 64 };
    const cases: [string, string, unknown, ErrorCode, RegExp][] = [
      ['an SDXL LoRA (text encoder 2 keys) on an SD 1.5 model', 'jobs.submit', { ...g, loras: [{ modelId: F.loras.sdxlTe2 }] }, 'BAD_REQUEST', /sdxl-te2 is a LoRA for SDXL, but atelier-shapes is SD 1\.5/],
      ['an SDXL LoRA (2048-wide attention) on an SD 1.5 model', 'jobs.submit', { ...g, loras: [{ modelId: F.loras.sdxl2048 }] }, 'BAD_REQUEST', /sdxl-2048 is a LoRA for SDXL/],
      ['an SDXL LoRA in the 2nd of 2 jobs (the 1st is fine): none queued', 'jobs.submitMany', { items: [g, { ...g, loras: [{ modelId: F.loras.sdxl2048 }] }] }, 'BAD_REQUEST', /is a LoRA for SDXL/],
      ['a checkpoint used as a LoRA', 'jobs.submit', { ...g, loras: [{ modelId: F.modelId }] }, 'BAD_REQUEST', /is a checkpoint, not a LoRA/],
      ['a LoRA used as the model', 'jobs.submit', { ...g, modelId: F.loras.sd2 }, 'BAD_REQUEST', /is a lora, not a checkpoint/],
      ['a ControlNet used as the model', 'jobs.submit', { ...g, modelId: F.controlnetId }, 'BAD_REQUEST', /is a controlnet, not a checkpoint/],
      ['a checkpoint used as the ControlNet', 'jobs.submit', { ...g, control: { modelId: F.modelId, image: F.asset } }, 'BAD_REQUEST', /is a checkpoint, not a ControlNet/],
      ['a LoRA that is not in the library', 'jobs.submit', { ...g, loras: [{ modelId: 'gone' }] }, 'MODEL_NOT_FOUND', /The model gone is not in the library/],
      ['a model that is not in the library', 'jobs.submit', { ...g, modelId: 'gone' }, 'MODEL_NOT_FOUND', /The model gone is not in the library/],
      ['a LoRA as the base of a training preset', 'training.preset', { modelId: F.loras.sd2 }, 'BAD_REQUEST', /LoRAs are trained on a checkpoint/],
      ['a LoRA as the base of a training', 'training.start', { name: 'x', datasetId: F.datasetId, modelId: F.loras.sd15w768 }, 'BAD_REQUEST', /LoRAs are trained on a checkpoint/],
      ['a training on a dataset that does not exist', 'training.start', { name: 'x', datasetId: '00000000-0000-0000-0000-000000000000', modelId: F.modelId }, 'NOT_FOUND', /No dataset/],
      ['a training on an empty dataset', 'training.start', { name: 'x', datasetId: F.emptyDatasetId, modelId: F.modelId }, 'BAD_REQUEST', /The dataset empty set has no images yet/],
    ];
    for (const [label, m, input, code, re] of cases) await refused('loras', label, m, input, code, re);
    expect(lostIn('loras')).toEqual([]);
  });
});

describe('captions and names with control characters', () => {
  it('fast-check: a caption with control characters is stored as one clean line; nothing else changes', async () => {
    const ctl = fc.integer({ min: 0, max: 0x1f }).map((c) => String.fromCharCode(c));
    const caption = fc.array(fc.oneof(ctl, ctl, fc.constantFrom('\u007f', 'a heart', ' ', '\r\n', 'é', '🎨', '\u001b[2J')), { minLength: 1, maxLength: 40 }).map((a) => a.join(''));
    const original = services.datasets.get(F.datasetId).images.find((i) => i.file === F.datasetImage)!.caption;
    const txt = path.join(services.datasets.folder(F.datasetId), `${F.datasetImage.replace(/\.[^.]+$/, '')}.txt`);
    await property('captions', () => fc.assert(
      fc.asyncProperty(caption, async (c) => {
        const before = snapshot();
        const mark = events.length;
        const wrong: string[] = [];
        const r = await services.dispatch('datasets.setCaption', { id: F.datasetId, file: F.datasetImage, caption: c });
        if (!r.ok) wrong.push(...vetError(r.error, ['BAD_REQUEST'], null));
        else {
          const stored = fs.readFileSync(txt, 'utf8');
          const answered = (r.value as { caption: string }).caption;
          // eslint-disable-next-line no-control-regex
          if (/[\u0000-\u001f\u007f]/.test(stored)) wrong.push(`stored ${JSON.stringify(stored)}`);
          if (answered !== stored) wrong.push(`answered ${JSON.stringify(answered)}, stored ${JSON.stringify(stored)}`);
          if (stored !== stored.trim()) wrong.push('not trimmed');
        }
        // The caption is the one thing this request may change: put it back, then nothing else may differ.
        services.datasets.setCaption(F.datasetId, F.datasetImage, original);
        const evs = eventsSince(mark).filter((e) => !e.startsWith('event datasets.changed'));
        const rr = record('captions', `setCaption ${JSON.stringify(c).slice(0, 60)}`, 'neutralized', [...wrong, ...evs], diff(before, snapshot()));
        return !rr.wrong.length && !rr.changed.length;
      }),
      { seed: 99, numRuns: 30, endOnFailure: true },
    ));
    const cases: [string, string, unknown, ErrorCode, RegExp][] = [
      ['setCaption of a file that is not there', 'datasets.setCaption', { id: F.datasetId, file: 'ghost.png', caption: 'x' }, 'NOT_FOUND', /No image ghost\.png/],
      ['setCaption of the dataset file itself', 'datasets.setCaption', { id: F.datasetId, file: 'dataset.json', caption: 'x' }, 'NOT_FOUND', /No image dataset\.json/],
      ['setCaption through ../', 'datasets.setCaption', { id: F.datasetId, file: `../${F.datasetImage}`, caption: 'x' }, 'NOT_FOUND', /No image \.\.\//],
      ['setCaption of a file name with control characters', 'datasets.setCaption', { id: F.datasetId, file: 'he\u0000art\u001b.png', caption: 'x' }, 'NOT_FOUND', /No image/],
      ['setCaption longer than 2000 characters', 'datasets.setCaption', { id: F.datasetId, file: F.datasetImage, caption: '\u0007'.repeat(2001) }, 'BAD_REQUEST', /caption: /],
      ['removeImage of the caption file', 'datasets.removeImage', { id: F.datasetId, file: 'heart.txt' }, 'NOT_FOUND', /No image heart\.txt/],
      ['removeImage through ../', 'datasets.removeImage', { id: F.datasetId, file: '../dataset.json' }, 'NOT_FOUND', /No image/],
      ['a trigger word with control characters', 'datasets.create', { name: 'd', trigger: 'fx\u0007t' }, 'BAD_REQUEST', /trigger: may not contain commas or control characters/],
      ['a trigger word with an escape sequence', 'datasets.update', { id: F.datasetId, trigger: '\u001b[31mred' }, 'BAD_REQUEST', /trigger: may not contain/],
      ['a trigger word with a comma', 'datasets.update', { id: F.datasetId, trigger: 'a,b' }, 'BAD_REQUEST', /trigger: may not contain commas/],
      ['a LoRA name with control characters', 'training.start', { name: 'my\u0000lora', datasetId: F.datasetId, modelId: F.modelId }, 'BAD_REQUEST', /name: may not contain/],
      ['a LoRA name with a path', 'training.start', { name: '../../evil', datasetId: F.datasetId, modelId: F.modelId }, 'BAD_REQUEST', /name: may not contain/],
    ];
    for (const [label, m, input, code, re] of cases) await refused('captions', label, m, input, code, re);
    expect(lostIn('captions')).toEqual([]);
  });
});

describe('ids that name nothing, or try to be something else', () => {
  // Not here: the idempotent removals (jobs.cancel, boards.delete, downloads.remove, history.delete,
  // history.setFavorite), which answer an unknown id with `false` / 0 and change nothing, by design.
  it('every method that takes an id answers NOT_FOUND (or says why not) for unknown and hostile ids', async () => {
    const ids = ['00000000-0000-0000-0000-000000000000', "' OR 1=1 --", '../../etc/passwd', '__proto__', 'constructor', '%s%n%x', '\u0000'];
    const methodsById: [string, (id: string) => unknown, ErrorCode[], RegExp][] = [
      ['history.get', (id) => ({ id }), ['NOT_FOUND'], /No history entry/],
      ['history.export', (id) => ({ id, format: 'comfyui' }), ['NOT_FOUND'], /No history entry/],
      ['boards.rename', (id) => ({ id, name: 'x' }), ['NOT_FOUND'], /No board/],
      ['boards.add', (id) => ({ id, generationIds: [F.genId] }), ['NOT_FOUND'], /No board/],
      ['boards.remove', (id) => ({ id, generationIds: [F.genId] }), ['NOT_FOUND'], /No board/],
      ['boards.export', (id) => ({ id, folder: path.join(fixtures, 'exports') }), ['NOT_FOUND'], /No board/],
      ['downloads.pause', (id) => ({ id }), ['NOT_FOUND'], /No download/],
      ['downloads.resume', (id) => ({ id }), ['NOT_FOUND'], /No download/],
      ['downloads.cancel', (id) => ({ id }), ['NOT_FOUND'], /No download/],
      ['jobs.retry', (id) => ({ id }), ['NOT_FOUND'], /No job/],
      ['jobs.move', (id) => ({ id, index: 0 }), ['BAD_REQUEST'], /Only a queued job can be moved/],
      ['datasets.get', (id) => ({ id }), ['NOT_FOUND'], /No dataset/],
      ['datasets.update', (id) => ({ id, name: 'x' }), ['NOT_FOUND'], /No dataset/],
      ['datasets.delete', (id) => ({ id }), ['NOT_FOUND'], /No dataset/],
      ['datasets.importFolder', (id) => ({ id, folder: path.join(fixtures, 'bad-images') }), ['NOT_FOUND'], /No dataset/],
      ['datasets.setCaption', (id) => ({ id, file: 'heart.png', caption: 'x' }), ['NOT_FOUND'], /No dataset/],
      ['datasets.removeImage', (id) => ({ id, file: 'heart.png' }), ['NOT_FOUND'], /No dataset/],
      ['training.preset', (id) => ({ modelId: id }), ['MODEL_NOT_FOUND'], /is not in the library/],
      ['training.start', (id) => ({ name: 'x', datasetId: F.datasetId, modelId: id }), ['MODEL_NOT_FOUND'], /is not in the library/],
      ['training.get', (id) => ({ id }), ['NOT_FOUND'], /No training job/],
      ['training.pause', (id) => ({ id }), ['NOT_FOUND'], /No training job/],
      ['training.resume', (id) => ({ id }), ['NOT_FOUND'], /No training job/],
      ['training.cancel', (id) => ({ id }), ['NOT_FOUND'], /No training job/],
      ['training.delete', (id) => ({ id }), ['NOT_FOUND'], /No training job/],
      ['jobs.submit (modelId)', (id) => ({ prompt: 'a cat', modelId: id, seed: 1 }), ['MODEL_NOT_FOUND'], /is not in the library/],
      ['jobs.submit (initImageId)', (id) => ({ prompt: 'a cat', modelId: F.modelId, seed: 1, mode: 'img2img', initImageId: id }), ['NOT_FOUND'], /No image/],
    ];
    for (const [label, make, codes, re] of methodsById) {
      const m = label.split(' ')[0];
      for (const id of ids) await refused('ids', `${label} ${JSON.stringify(id)}`, m, make(id), codes, re);
    }
    await refused('ids', 'cloud.setKey here (keys come from the environment)', 'cloud.setKey', { key: `sk-${'a'.repeat(40)}` }, 'BAD_REQUEST', /OPENAI_API_KEY/);
    await refused('ids', 'cloud.estimate of a model that does not exist', 'cloud.estimate', { model: 'dall-e-9', size: '1024x1024' }, 'BAD_REQUEST', /dall-e-9 is not an OpenAI image model/);
    await refused('ids', 'a board named like one that exists', 'boards.create', { name: 'fixtures' }, 'BAD_REQUEST', /name: there is already a board called "fixtures"/);
    expect(lostIn('ids')).toEqual([]);
  });
});

describe('what only the Python worker can tell (real worker, embedded demo model)', () => {
  it('garbage pixel data and LoRAs that fit by their keys but not the model: a failed job or a refusal with the field, nothing saved', async () => {
    await services.runtime.ensureStarted();
    await refused('worker', 'canvas.canny of an asset whose pixel data is garbage', 'canvas.canny', { image: F.garbageAsset }, 'BAD_REQUEST', /image .*could not be decoded|not an image file/);

    const g: GenerateParamsInput = { prompt: 'a cat', modelId: F.modelId, seed: 1, steps: 2, width: 64, height: 64, sampler: 'Euler', noCache: true };
    const frame = { x: 0, y: 0, width: 64, height: 64 };
    const jobs: [string, GenerateParamsInput, RegExp][] = [
      ['inpaint from an init image whose pixel data is garbage', { ...g, mode: 'inpaint', canvas: { frame, init: F.garbageAsset, mask: F.mask } }, /^init_image .*(could not be decoded|not an image file)/],
      ['img2img from an init image whose pixel data is garbage', { ...g, mode: 'img2img', canvas: { frame, init: F.garbageAsset, mask: F.mask } }, /^init_image .*(could not be decoded|not an image file)/],
      ['a ControlNet image whose pixel data is garbage', { ...g, control: { modelId: F.controlnetId, image: F.garbageAsset } }, /^control\.image .*(could not be decoded|not an image file)/],
      ['a LoRA whose metadata says SDXL on an SD 1.5 model', { ...g, loras: [{ modelId: F.loras.metaSdxl }] }, /^loras\[0\]\.path says-sdxl\.safetensors is an? .*SDXL.* LoRA, which does not fit /],
      ['an SD 2.x LoRA (1024-wide text) on an SD 1.5 model', { ...g, loras: [{ modelId: F.loras.sd2 }] }, /^loras\[0\]\.path sd2-1024\.safetensors is a Stable Diffusion 2\.x LoRA, which does not fit /],
      ['an SD 1.5 LoRA made for 768-wide text on a model whose text is 128 wide', { ...g, loras: [{ modelId: F.loras.sd15w768 }] }, /^loras\[0\]\.path sd15-768\.safetensors does not fit .*text width is 768/],
      ['a LoRA with LyCORIS layers', { ...g, loras: [{ modelId: F.loras.lycoris }] }, /^loras\[0\]\.path lycoris-mix\.safetensors contains LyCORIS layers/],
    ];
    for (const [label, params, re] of jobs) {
      const before = snapshot();
      const mark = events.length;
      const wrong: string[] = [];
      let jobId = '';
      try {
        const r = await services.dispatch('jobs.submit', params);
        if (!r.ok) wrong.push(...vetError(r.error, ['BAD_REQUEST'], re));
        else {
          jobId = (r.value as { id: string }).id;
          await answerWithin(services.jobs.whenIdle(), label);
          const job = services.jobs.list().find((j) => j.id === jobId);
          if (!job) wrong.push('the job disappeared');
          else if (job.state !== 'failed') wrong.push(`job ${job.state}${job.generationId ? ` -> ${job.generationId}` : ''}`);
          else wrong.push(...vetError(job.error!, ['BAD_REQUEST'], re));
        }
      } catch (err) {
        wrong.push(`threw: ${(err as Error).message}`);
      }
      wrong.push(...eventsSince(mark, [jobId]));
      record('worker', label, 'refused', wrong, diff(before, snapshot(), [jobId]));
    }
    expect(lostIn('worker')).toEqual([]);
  }, 600_000);
});
