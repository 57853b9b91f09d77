/**
 * `npm run bench` (part 1): the history at 100,000 generations. For each query
 * the gallery makes, the latency of our path (HistoryStore.list: the filtered
 * page, its total, and the images of each row) against the bare SQL that
 * fetches the same page of rows and nothing else, measured alternately in one
 * run; p50 / p95 and their ratio. A LIKE scan shows what FTS5 saves.
 *
 * ATELIER_BENCH_ROWS overrides the row count.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { HistoryStore, ftsQuery, type HistoryQuery } from '../../src/main/services/history/store';
import { HISTORY_COUNT_CAP } from '../../src/shared/contract';

const ROWS = Number(process.env.ATELIER_BENCH_ROWS ?? 100_000);
const REPS = Number(process.env.ATELIER_BENCH_REPS ?? 40);

const WORDS = (
  'castle dragon forest portrait cyberpunk city neon rain mountain lake sunset robot knight princess ocean ship ' +
  'desert temple ruins garden flower cat dog fox owl wolf tiger space station nebula planet astronaut samurai ' +
  'watercolor oil painting sketch concept art cinematic lighting volumetric fog golden hour studio product bottle'
).split(' ');
const MODELS = ['dreamshaper_8', 'sdxl_base', 'atelier-shapes', 'juggernaut', 'realistic_vision'];
const SAMPLERS = ['Euler a', 'DPM++ 2M Karras', 'Euler', 'DDIM'];

function rng(seed: number) {
  return () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

function time(fn: () => unknown): number {
  const t = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t) / 1e6;
}

export function runHistoryBench(): void {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-bench-history-'));
  const store = new HistoryStore({ dir });
  const db = store.database;
  const r = rng(42);
  const pick = <T>(xs: T[]) => xs[Math.floor(r() * xs.length)];
  const t0 = Date.now();
  const insGen = db.prepare(
    `INSERT INTO generations (id, created_at, backend, mode, prompt, negative_prompt, model_id, model_name, model_hash, sampler, steps, cfg, seed, width, height, batch,
       strength, control_json, loras_json, device, timings_json, cost_usd, params_json, favorite)
     VALUES (?, ?, 'local', 'txt2img', ?, 'blurry, lowres', NULL, ?, NULL, ?, 20, 7, ?, 512, 512, 1, NULL, NULL, ?, 'cpu', '{}', NULL, '{}', ?)`,
  );
  const insImg = db.prepare(`INSERT INTO images (id, generation_id, idx, path, sha256, width, height, seed, parent_image_id, created_at) VALUES (?, ?, 0, ?, 'x', 512, 512, ?, NULL, ?)`);
  const start = Date.parse('2025-01-01T00:00:00Z');
  db.transaction(() => {
    for (let i = 0; i < ROWS; i++) {
      const id = randomUUID();
      const at = new Date(start + i * 60000).toISOString();
      const prompt = Array.from({ length: 6 + Math.floor(r() * 10) }, () => pick(WORDS)).join(' ');
      const loras = r() < 0.2 ? JSON.stringify([{ name: pick(['brand', 'style', 'inkwash']), hash: null, weight: 0.8 }]) : '[]';
      insGen.run(id, at, prompt, pick(MODELS), pick(SAMPLERS), i, loras, r() < 0.05 ? 1 : 0);
      insImg.run(randomUUID(), id, `images/x/${id}-0.png`, i, at);
    }
  })();
  console.log(`history bench: ${ROWS} generations inserted in ${((Date.now() - t0) / 1000).toFixed(1)} s (FTS index kept by triggers)`);

  const cols = 'g.*';
  // `ours` is the gallery's first call: the page with its images, without the total, which it asks
  // for separately (history.count, timed in the second table).
  const cases: { name: string; ours: () => unknown; bare: () => unknown; count?: () => unknown }[] = [
    {
      name: 'newest page (60)',
      ours: () => store.list({ limit: 60, withTotal: false }),
      bare: () => db.prepare(`SELECT ${cols} FROM generations g ORDER BY g.created_at DESC, g.rowid DESC LIMIT 60`).all(),
    },
    {
      name: 'search "castle"',
      ours: () => store.list({ query: 'castle', limit: 60, withTotal: false }),
      bare: () =>
        db.prepare(`SELECT ${cols} FROM generations g WHERE g.rowid IN (SELECT rowid FROM generations_fts WHERE generations_fts MATCH ?) ORDER BY g.created_at DESC, g.rowid DESC LIMIT 60`).all(ftsQuery('castle')),
    },
    {
      name: 'search "neon samurai rain"',
      ours: () => store.list({ query: 'neon samurai rain', limit: 60, withTotal: false }),
      bare: () =>
        db
          .prepare(`SELECT ${cols} FROM generations g WHERE g.rowid IN (SELECT rowid FROM generations_fts WHERE generations_fts MATCH ?) ORDER BY g.created_at DESC, g.rowid DESC LIMIT 60`)
          .all(ftsQuery('neon samurai rain')),
    },
    {
      name: 'model + sampler filter',
      ours: () => store.list({ model: 'juggernaut', sampler: 'DDIM', limit: 60, withTotal: false }),
      bare: () => db.prepare(`SELECT ${cols} FROM generations g WHERE g.model_name = ? AND g.sampler = ? ORDER BY g.created_at DESC, g.rowid DESC LIMIT 60`).all('juggernaut', 'DDIM'),
    },
    {
      name: 'favorites',
      ours: () => store.list({ favorite: true, limit: 60, withTotal: false }),
      bare: () => db.prepare(`SELECT ${cols} FROM generations g WHERE g.favorite = 1 ORDER BY g.created_at DESC, g.rowid DESC LIMIT 60`).all(),
    },
    {
      name: 'LoRA "inkwash"',
      ours: () => store.list({ lora: 'inkwash', limit: 60, withTotal: false }),
      bare: () =>
        db.prepare(`SELECT ${cols} FROM generations g WHERE EXISTS (SELECT 1 FROM generation_loras l WHERE l.generation_id = g.id AND l.name = ?) ORDER BY g.created_at DESC, g.rowid DESC LIMIT 60`).all('inkwash'),
    },
    {
      name: 'page at offset 50000',
      ours: () => store.list({ limit: 60, offset: 50000, withTotal: false }),
      bare: () => db.prepare(`SELECT ${cols} FROM generations g ORDER BY g.created_at DESC, g.rowid DESC LIMIT 60 OFFSET 50000`).all(),
    },
  ];
  console.log(`${'query'.padEnd(28)} ${'ours p50'.padStart(9)} ${'ours p95'.padStart(9)} ${'bare p50'.padStart(9)} ${'bare p95'.padStart(9)} ${'p50 ratio'.padStart(9)}`);
  for (const c of cases) {
    c.ours();
    c.bare(); // warm the page cache and statement cache
    const ours: number[] = [];
    const bare: number[] = [];
    for (let i = 0; i < REPS; i++) {
      ours.push(time(c.ours));
      bare.push(time(c.bare));
    }
    const f = (x: number) => `${x.toFixed(2)}ms`.padStart(9);
    console.log(`${c.name.padEnd(28)} ${f(pct(ours, 50))} ${f(pct(ours, 95))} ${f(pct(bare, 50))} ${f(pct(bare, 95))} ${(pct(ours, 50) / pct(bare, 50)).toFixed(2).padStart(9)}`);
  }
  console.log(`\n${'count (second call)'.padEnd(28)} ${'p50'.padStart(9)} ${'p95'.padStart(9)}  (counted up to ${HISTORY_COUNT_CAP.toLocaleString('en-US')} + 1)`);
  const counts: [string, HistoryQuery][] = [
    ['all', {}],
    ['search "castle"', { query: 'castle' }],
    ['model + sampler filter', { model: 'juggernaut', sampler: 'DDIM' }],
    ['favorites', { favorite: true }],
    ['LoRA "inkwash"', { lora: 'inkwash' }],
  ];
  for (const [name, q] of counts) {
    store.count(q);
    const t: number[] = [];
    for (let i = 0; i < REPS; i++) t.push(time(() => store.count(q)));
    console.log(`${name.padEnd(28)} ${`${pct(t, 50).toFixed(2)}ms`.padStart(9)} ${`${pct(t, 95).toFixed(2)}ms`.padStart(9)}  ${JSON.stringify(store.count(q))}`);
  }
  // What the generation_loras table saves over json_each on every row (migration 5).
  const jsonEach: number[] = [];
  for (let i = 0; i < 10; i++)
    jsonEach.push(time(() => db.prepare(`SELECT g.* FROM generations g WHERE EXISTS (SELECT 1 FROM json_each(g.loras_json) WHERE json_extract(value, '$.name') = ?) ORDER BY g.created_at DESC, g.rowid DESC LIMIT 60`).all('inkwash')));
  console.log(`\nLoRA page by json_each over every row (before migration 5): p50 ${pct(jsonEach, 50).toFixed(2)} ms`);
  // What FTS5 saves over the LIKE scan the history used before.
  const like: number[] = [];
  const fts: number[] = [];
  for (let i = 0; i < 10; i++) {
    like.push(time(() => db.prepare(`SELECT COUNT(*) FROM generations WHERE prompt LIKE '%samurai%' AND prompt LIKE '%neon%'`).get()));
    fts.push(time(() => db.prepare(`SELECT COUNT(*) FROM generations_fts WHERE generations_fts MATCH ?`).get(ftsQuery('samurai neon'))));
  }
  console.log(`count matches "samurai neon": LIKE scan p50 ${pct(like, 50).toFixed(1)} ms, FTS5 p50 ${pct(fts, 50).toFixed(1)} ms (${(pct(like, 50) / pct(fts, 50)).toFixed(1)}x)`);
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
}

if (require.main === module) runHistoryBench();
