/**
 * The history store: one SQLite file (WAL, foreign keys, one writer) and the
 * image files beside it. Plain Node: tests build it on a temp dir.
 *
 * Crash safety: image files are written (temp name, fsync, rename) before the
 * rows that point at them are committed, so a crash can leave an orphan file
 * (swept at the next start) but never a row without its file.
 */
import Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { z } from 'zod';
import { HISTORY_COUNT_CAP, type Board, type Generation, type HistoryListInput, type HistoryPage, type ImageRecord, type ModelRecord } from '../../../shared/contract';
import { AtelierError } from '../../../shared/errors';
import { pngSize, resolveInside, sha256, TEMP_MARK, writeFileAtomic } from '../../lib/fsx';
import { imageInfo } from '../../lib/imageinfo';
import { pngChecksumError, writePngText } from '../../lib/pngchunks';
import { THUMB_SIZES, thumbnailFor } from '../../lib/thumbnail';
import { ATELIER_KEY, formatA1111, type ImageParams } from './metadata';
import { MIGRATIONS } from './migrations';

export interface NewImage {
  /** PNG bytes, or a path to read them from (e.g. the worker's job folder). */
  data?: Uint8Array;
  sourcePath?: string;
  seed: number;
  parentImageId?: string | null;
}

export type NewGeneration = Omit<Generation, 'id' | 'createdAt' | 'images' | 'favorite' | 'revisedPrompt' | 'cloud'> & {
  revisedPrompt?: string | null;
  params: unknown;
  /** Content hash of model, parameters, seed and inputs (the result cache's key). */
  cacheKey?: string | null;
  /** The queue row this generation finishes: removed in the same transaction, so a kill never leaves both. */
  queueId?: string;
  images: NewImage[];
};

export interface HistoryStoreOptions {
  /** Folder that holds `atelier.db` and `images/`. */
  dir: string;
  now?: () => Date;
}

interface GenerationRow {
  id: string;
  created_at: string;
  backend: 'local' | 'cloud';
  mode: string;
  prompt: string;
  negative_prompt: string;
  model_id: string | null;
  model_name: string;
  model_hash: string | null;
  sampler: string;
  steps: number;
  cfg: number;
  seed: number;
  width: number;
  height: number;
  batch: number;
  strength: number | null;
  control_json: string | null;
  loras_json: string;
  device: string | null;
  timings_json: string;
  cost_usd: number | null;
  revised_prompt: string | null;
  params_json: string;
  favorite: number;
  cache_key: string | null;
}

interface ImageRow {
  id: string;
  generation_id: string;
  idx: number;
  path: string;
  sha256: string;
  width: number;
  height: number;
  seed: number;
  parent_image_id: string | null;
  created_at: string;
}

interface ModelRow {
  id: string;
  name: string;
  path: string;
  kind: ModelRecord['kind'];
  format: ModelRecord['format'];
  family: ModelRecord['family'];
  size_bytes: number;
  source: string;
  hash: string | null;
  native_size: number | null;
  added_at: string;
}

const toImage = (r: ImageRow): ImageRecord => ({
  id: r.id,
  generationId: r.generation_id,
  index: r.idx,
  path: r.path,
  sha256: r.sha256,
  width: r.width,
  height: r.height,
  seed: r.seed,
  parentImageId: r.parent_image_id,
  createdAt: r.created_at,
});

const toModel = (r: ModelRow): ModelRecord => ({
  id: r.id,
  name: r.name,
  path: r.path,
  kind: r.kind,
  format: r.format,
  family: r.family,
  sizeBytes: r.size_bytes,
  source: r.source,
  hash: r.hash,
  nativeSize: r.native_size,
  addedAt: r.added_at,
});

export type HistoryQuery = Partial<Omit<z.output<typeof HistoryListInput>, 'limit' | 'offset'>> & { limit?: number; offset?: number };

/**
 * A user's search text as an FTS5 query: each word (letters, digits, apostrophes)
 * is a quoted prefix term, all must match. Operators and quotes in the text are
 * never interpreted, so any input is a valid query.
 */
export function ftsQuery(text: string): string {
  const words = text.toLowerCase().match(/[\p{L}\p{N}_']+/gu) ?? [];
  return words
    .slice(0, 32)
    .map((w) => `"${w.replace(/"/g, '""')}"*`)
    .join(' ');
}

/** The text chunks written into a stored PNG: deterministic (no times or ids), so the same request gives the same bytes. */
export function imageMetadata(g: Omit<NewGeneration, 'images'>, seed: number): Record<string, string> {
  const p: ImageParams = {
    prompt: g.prompt,
    negativePrompt: g.negativePrompt,
    sampler: g.sampler,
    steps: g.steps,
    cfg: g.cfg,
    seed,
    width: g.width,
    height: g.height,
    modelName: g.modelName,
    modelHash: g.modelHash,
    strength: g.strength,
    mode: g.mode,
    loras: g.loras.map((l) => ({ name: l.name, weight: l.weight, hash: l.hash })),
    backend: g.backend,
  };
  const extra: Record<string, string> = { Version: 'Atelier' };
  return {
    parameters: formatA1111(p, extra),
    // The request that makes exactly this image: its own seed, batch 1 (so image i of a batch and a
    // single run with seed + i carry the same metadata, and the same bytes).
    [ATELIER_KEY]: JSON.stringify({ version: 1, params: p, request: g.params && typeof g.params === 'object' ? { ...(g.params as object), seed, batch: 1 } : null }),
  };
}

export class HistoryStore {
  readonly dir: string;
  readonly imagesDir: string;
  readonly dbPath: string;
  private db: Database.Database;
  private now: () => Date;

  constructor(opts: HistoryStoreOptions) {
    this.dir = opts.dir;
    this.imagesDir = path.join(opts.dir, 'images');
    this.dbPath = path.join(opts.dir, 'atelier.db');
    this.now = opts.now ?? (() => new Date());
    fs.mkdirSync(this.imagesDir, { recursive: true });
    this.db = new Database(this.dbPath);
    this.db.pragma('journal_mode = WAL');
    // FULL: a committed generation survives a power cut too, not only a crash; writes are rare and small.
    this.db.pragma('synchronous = FULL');
    this.db.pragma('foreign_keys = ON');
    this.db.pragma('busy_timeout = 5000');
    this.migrate();
  }

  /** The connection, for stores that keep their tables in the same file (training jobs). */
  get database(): Database.Database {
    return this.db;
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  private migrate(): void {
    const current = this.schemaVersion;
    if (current > MIGRATIONS.length) {
      throw new AtelierError(
        'INTERNAL',
        `The history database was written by a newer Atelier (schema ${current}, this one knows ${MIGRATIONS.length}). Update Atelier; your history is untouched.`,
      );
    }
    for (let v = current; v < MIGRATIONS.length; v++) {
      this.db.transaction(() => {
        this.db.exec(MIGRATIONS[v]);
        this.db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  close(): void {
    if (this.db.open) {
      this.db.pragma('wal_checkpoint(TRUNCATE)');
      this.db.close();
    }
  }

  // ------------------------------------------------------------- generations

  addGeneration(input: NewGeneration): Generation {
    if (input.images.length === 0) throw new AtelierError('BAD_REQUEST', 'A generation needs at least one image.');
    const id = randomUUID();
    const createdAt = this.now().toISOString();
    const month = createdAt.slice(0, 7);
    const written: string[] = [];
    const images: ImageRow[] = [];
    try {
      input.images.forEach((img, idx) => {
        const raw = img.data ?? (img.sourcePath ? fs.readFileSync(img.sourcePath) : undefined);
        if (!raw) throw new AtelierError('BAD_REQUEST', `Image ${idx} has neither data nor a source path.`);
        let size: { width: number; height: number };
        let data: Buffer;
        try {
          size = pngSize(raw);
          // Every file carries how it was made: A1111's text (PNG Info, Civitai) and Atelier's exact JSON.
          data = writePngText(Buffer.from(raw), imageMetadata(input, img.seed));
        } catch (err) {
          throw new AtelierError('BAD_REQUEST', `Image ${idx} is not a valid PNG (${(err as Error).message}); nothing was saved.`);
        }
        const rel = `images/${month}/${id}-${idx}.png`;
        const abs = path.join(this.dir, ...rel.split('/'));
        writeFileAtomic(abs, data);
        written.push(abs);
        images.push({
          id: randomUUID(),
          generation_id: id,
          idx,
          path: rel,
          sha256: sha256(data),
          width: size.width,
          height: size.height,
          seed: img.seed,
          parent_image_id: img.parentImageId ?? null,
          created_at: createdAt,
        });
      });
      this.db.transaction(() => {
        this.db
          .prepare(
            `INSERT INTO generations (id, created_at, backend, mode, prompt, negative_prompt, model_id, model_name, model_hash,
               sampler, steps, cfg, seed, width, height, batch, strength, control_json, loras_json, device, timings_json, cost_usd, params_json, cache_key, revised_prompt)
             VALUES (@id, @created_at, @backend, @mode, @prompt, @negative_prompt, @model_id, @model_name, @model_hash,
               @sampler, @steps, @cfg, @seed, @width, @height, @batch, @strength, @control_json, @loras_json, @device, @timings_json, @cost_usd, @params_json, @cache_key, @revised_prompt)`,
          )
          .run({
            id,
            created_at: createdAt,
            backend: input.backend,
            mode: input.mode,
            prompt: input.prompt,
            negative_prompt: input.negativePrompt,
            model_id: input.modelId,
            model_name: input.modelName,
            model_hash: input.modelHash,
            sampler: input.sampler,
            steps: input.steps,
            cfg: input.cfg,
            seed: input.seed,
            width: input.width,
            height: input.height,
            batch: input.batch,
            strength: input.strength,
            control_json: input.control == null ? null : JSON.stringify(input.control),
            loras_json: JSON.stringify(input.loras),
            device: input.device,
            timings_json: JSON.stringify(input.timings),
            cost_usd: input.costUsd,
            params_json: JSON.stringify(input.params ?? {}),
            cache_key: input.cacheKey ?? null,
            revised_prompt: input.revisedPrompt ?? null,
          });
        const insert = this.db.prepare(
          `INSERT INTO images (id, generation_id, idx, path, sha256, width, height, seed, parent_image_id, created_at)
           VALUES (@id, @generation_id, @idx, @path, @sha256, @width, @height, @seed, @parent_image_id, @created_at)`,
        );
        for (const row of images) insert.run(row);
        if (input.queueId) this.db.prepare('DELETE FROM queue WHERE id = ?').run(input.queueId);
      })();
    } catch (err) {
      for (const f of written) fs.rmSync(f, { force: true });
      throw err;
    }
    return this.get(id);
  }

  get(id: string): Generation {
    const row = this.db.prepare('SELECT * FROM generations WHERE id = ?').get(id) as GenerationRow | undefined;
    if (!row) throw new AtelierError('NOT_FOUND', `No history entry ${id}: it may have been deleted.`);
    return this.hydrate([row])[0];
  }

  list(opts: HistoryQuery = {}): HistoryPage {
    const limit = opts.limit ?? 60;
    const offset = opts.offset ?? 0;
    const { where, args } = this.filters(opts);
    const sqlWhere = where.length ? `WHERE ${where.join(' AND ')}` : '';
    // One row more than asked says whether there is a next page without counting.
    const rows = this.db
      .prepare(`SELECT g.* FROM generations g ${sqlWhere} ORDER BY g.created_at DESC, g.rowid DESC LIMIT @limit OFFSET @offset`)
      .all({ ...args, limit: limit + 1, offset }) as GenerationRow[];
    const more = rows.length > limit;
    if (more) rows.pop();
    let total: number | null = null;
    let totalCapped = false;
    if (offset === 0 && !more) total = rows.length;
    else if (offset === 0 && opts.withTotal !== false) ({ total, capped: totalCapped } = this.count(opts));
    return { items: this.hydrate(rows), total, totalCapped, nextOffset: more ? offset + rows.length : null };
  }

  /**
   * How many entries match, counted up to HISTORY_COUNT_CAP. A filter no index covers (model AND
   * sampler, say) visits every matching row, so the gallery asks for its first page without the
   * total (`withTotal: false`) and for this separately: the images show before the count does.
   */
  count(opts: HistoryQuery = {}): { total: number; capped: boolean } {
    const { where, args } = this.filters(opts, true);
    const sqlWhere = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const n = (this.db.prepare(`SELECT COUNT(*) AS n FROM (SELECT 1 FROM generations g ${sqlWhere} LIMIT ${HISTORY_COUNT_CAP + 1})`).get(args) as { n: number }).n;
    return { total: Math.min(n, HISTORY_COUNT_CAP), capped: n > HISTORY_COUNT_CAP };
  }

  private filters(opts: HistoryQuery, forCount = false): { where: string[]; args: Record<string, unknown> } {
    const where: string[] = [];
    const args: Record<string, unknown> = {};
    const fts = ftsQuery(opts.query ?? '');
    if (fts) {
      where.push('g.rowid IN (SELECT rowid FROM generations_fts WHERE generations_fts MATCH @fts)');
      args.fts = fts;
    } else if ((opts.query ?? '').trim()) {
      where.push('0'); // only punctuation: matches nothing rather than everything
    }
    if (opts.model) {
      where.push('g.model_name = @model');
      args.model = opts.model;
    }
    if (opts.lora) {
      // EXISTS, not IN: the page walks generations newest first and stops after `limit` matches,
      // each checked by one index lookup; IN would collect and sort every match first (20x slower)
      // (a count visits every match anyway: there the name index alone is faster)
      where.push(
        forCount
          ? 'g.id IN (SELECT generation_id FROM generation_loras WHERE name = @lora)'
          : 'EXISTS (SELECT 1 FROM generation_loras l WHERE l.generation_id = g.id AND l.name = @lora)',
      );
      args.lora = opts.lora;
    }
    if (opts.sampler) {
      where.push('g.sampler = @sampler');
      args.sampler = opts.sampler;
    }
    if (opts.backend) {
      where.push('g.backend = @backend');
      args.backend = opts.backend;
    }
    if (opts.favorite !== undefined) where.push(opts.favorite ? 'g.favorite = 1' : 'g.favorite = 0');
    if (opts.from) {
      where.push('g.created_at >= @from');
      args.from = opts.from;
    }
    if (opts.to) {
      where.push('g.created_at < @to');
      args.to = opts.to;
    }
    if (opts.boardId) {
      where.push('g.id IN (SELECT generation_id FROM board_items WHERE board_id = @board)');
      args.board = opts.boardId;
    }
    return { where, args };
  }

  /** USD spent on cloud images since an ISO date (this month's spend, for the budget). */
  cloudSpendSince(iso: string): number {
    return (this.db.prepare(`SELECT COALESCE(SUM(cost_usd), 0) AS s FROM generations WHERE backend = 'cloud' AND created_at >= ?`).get(iso) as { s: number }).s;
  }

  /** The values the gallery's filters offer. */
  facets(): { models: string[]; samplers: string[]; loras: string[] } {
    const col = (sql: string) => (this.db.prepare(sql).all() as { v: string }[]).map((r) => r.v);
    return {
      models: col('SELECT DISTINCT model_name AS v FROM generations ORDER BY v COLLATE NOCASE'),
      samplers: col('SELECT DISTINCT sampler AS v FROM generations ORDER BY v'),
      loras: col('SELECT DISTINCT name AS v FROM generation_loras ORDER BY v COLLATE NOCASE'),
    };
  }

  setFavorite(ids: string[], favorite: boolean): number {
    return this.db.prepare('UPDATE generations SET favorite = ? WHERE id IN (SELECT value FROM json_each(?))').run(favorite ? 1 : 0, JSON.stringify(ids)).changes;
  }

  /** The newest generation made from exactly this request whose files all still exist (the result cache). */
  findCached(key: string): Generation | null {
    const rows = this.db.prepare('SELECT * FROM generations WHERE cache_key = ? ORDER BY created_at DESC LIMIT 5').all(key) as GenerationRow[];
    for (const g of this.hydrate(rows)) {
      if (g.images.length && g.images.every((im) => fs.existsSync(path.join(this.dir, ...im.path.split('/'))))) return g;
    }
    return null;
  }

  // ------------------------------------------------------------------ boards

  listBoards(): Board[] {
    const rows = this.db
      .prepare(
        `SELECT b.id, b.name, b.created_at, COUNT(bi.generation_id) AS count,
           (SELECT i.path FROM board_items x JOIN images i ON i.generation_id = x.generation_id AND i.idx = 0 WHERE x.board_id = b.id ORDER BY x.added_at DESC LIMIT 1) AS cover
         FROM boards b LEFT JOIN board_items bi ON bi.board_id = b.id GROUP BY b.id ORDER BY b.name COLLATE NOCASE`,
      )
      .all() as { id: string; name: string; created_at: string; count: number; cover: string | null }[];
    return rows.map((r) => ({ id: r.id, name: r.name, createdAt: r.created_at, count: r.count, cover: r.cover }));
  }

  getBoard(id: string): Board {
    const b = this.listBoards().find((x) => x.id === id);
    if (!b) throw new AtelierError('NOT_FOUND', `No board ${id}: it may have been deleted.`);
    return b;
  }

  createBoard(name: string): Board {
    const id = randomUUID();
    try {
      this.db.prepare('INSERT INTO boards (id, name, created_at) VALUES (?, ?, ?)').run(id, name, this.now().toISOString());
    } catch (err) {
      if (/UNIQUE/.test((err as Error).message)) throw new AtelierError('BAD_REQUEST', `name: there is already a board called "${name}".`);
      throw err;
    }
    return this.getBoard(id);
  }

  renameBoard(id: string, name: string): Board {
    this.getBoard(id);
    try {
      this.db.prepare('UPDATE boards SET name = ? WHERE id = ?').run(name, id);
    } catch (err) {
      if (/UNIQUE/.test((err as Error).message)) throw new AtelierError('BAD_REQUEST', `name: there is already a board called "${name}".`);
      throw err;
    }
    return this.getBoard(id);
  }

  deleteBoard(id: string): boolean {
    return this.db.prepare('DELETE FROM boards WHERE id = ?').run(id).changes > 0;
  }

  addToBoard(id: string, generationIds: string[]): Board {
    this.getBoard(id);
    const now = this.now().toISOString();
    const ins = this.db.prepare('INSERT OR IGNORE INTO board_items (board_id, generation_id, added_at) SELECT ?, id, ? FROM generations WHERE id = ?');
    this.db.transaction(() => generationIds.forEach((g) => ins.run(id, now, g)))();
    return this.getBoard(id);
  }

  removeFromBoard(id: string, generationIds: string[]): Board {
    this.getBoard(id);
    this.db.prepare('DELETE FROM board_items WHERE board_id = ? AND generation_id IN (SELECT value FROM json_each(?))').run(id, JSON.stringify(generationIds));
    return this.getBoard(id);
  }

  /** Stored request parameters of a generation (what "use these settings" and exports read). */
  params(id: string): Record<string, unknown> {
    const row = this.db.prepare('SELECT params_json FROM generations WHERE id = ?').get(id) as { params_json: string } | undefined;
    if (!row) throw new AtelierError('NOT_FOUND', `No history entry ${id}: it may have been deleted.`);
    return JSON.parse(row.params_json);
  }

  // ------------------------------------------------------------------ queue

  /** Jobs waiting to run, persisted so the queue survives a restart. */
  queueList(): { id: string; params: unknown; modelName: string; createdAt: string }[] {
    return (this.db.prepare('SELECT * FROM queue ORDER BY position, created_at').all() as { id: string; params_json: string; model_name: string; created_at: string }[]).map((r) => ({
      id: r.id,
      params: JSON.parse(r.params_json),
      modelName: r.model_name,
      createdAt: r.created_at,
    }));
  }

  queuePut(items: { id: string; params: unknown; modelName: string; createdAt: string }[]): void {
    const max = (this.db.prepare('SELECT COALESCE(MAX(position), 0) AS m FROM queue').get() as { m: number }).m;
    const ins = this.db.prepare('INSERT OR REPLACE INTO queue (id, position, params_json, model_name, created_at) VALUES (?, ?, ?, ?, ?)');
    this.db.transaction(() => items.forEach((it, i) => ins.run(it.id, max + i + 1, JSON.stringify(it.params), it.modelName, it.createdAt)))();
  }

  queueRemove(id: string): void {
    this.db.prepare('DELETE FROM queue WHERE id = ?').run(id);
  }

  queueOrder(ids: string[]): void {
    const upd = this.db.prepare('UPDATE queue SET position = ? WHERE id = ?');
    this.db.transaction(() => ids.forEach((id, i) => upd.run(i + 1, id)))();
  }

  private hydrate(rows: GenerationRow[]): Generation[] {
    if (rows.length === 0) return [];
    const ids = rows.map((r) => r.id);
    const imageRows = this.db
      .prepare(`SELECT * FROM images WHERE generation_id IN (SELECT value FROM json_each(?)) ORDER BY idx`)
      .all(JSON.stringify(ids)) as ImageRow[];
    const byGen = new Map<string, ImageRecord[]>();
    for (const r of imageRows) {
      const list = byGen.get(r.generation_id) ?? [];
      list.push(toImage(r));
      byGen.set(r.generation_id, list);
    }
    return rows.map((r) => ({
      id: r.id,
      createdAt: r.created_at,
      backend: r.backend,
      mode: r.mode,
      prompt: r.prompt,
      negativePrompt: r.negative_prompt,
      modelId: r.model_id,
      modelName: r.model_name,
      modelHash: r.model_hash,
      sampler: r.sampler,
      steps: r.steps,
      cfg: r.cfg,
      seed: r.seed,
      width: r.width,
      height: r.height,
      batch: r.batch,
      strength: r.strength,
      control: r.control_json == null ? null : JSON.parse(r.control_json),
      loras: JSON.parse(r.loras_json),
      device: r.device,
      timings: JSON.parse(r.timings_json),
      costUsd: r.cost_usd,
      revisedPrompt: r.revised_prompt ?? null,
      cloud: r.backend === 'cloud' ? cloudOptions(r.params_json) : null,
      favorite: r.favorite === 1,
      images: byGen.get(r.id) ?? [],
    }));
  }

  getImage(id: string): ImageRecord & { absPath: string } {
    const row = this.db.prepare('SELECT * FROM images WHERE id = ?').get(id) as ImageRow | undefined;
    if (!row) throw new AtelierError('NOT_FOUND', `No image ${id} in the history: it may have been deleted.`);
    return { ...toImage(row), absPath: path.join(this.dir, ...row.path.split('/')) };
  }

  /** Delete generations with their image rows and files. Returns how many generations went. */
  delete(ids: string[]): number {
    const select = this.db.prepare('SELECT path FROM images WHERE generation_id = ?');
    const del = this.db.prepare('DELETE FROM generations WHERE id = ?');
    const files: string[] = [];
    let deleted = 0;
    this.db.transaction(() => {
      for (const id of ids) {
        for (const r of select.all(id) as { path: string }[]) files.push(r.path);
        deleted += del.run(id).changes; // images go by ON DELETE CASCADE
      }
    })();
    // Rows first, then files: a crash in between leaves orphan files that the next start sweeps, never a dangling row.
    for (const rel of files) fs.rmSync(path.join(this.dir, ...rel.split('/')), { force: true });
    return deleted;
  }

  /**
   * Absolute path of a library image the UI may show (history images, assets,
   * dataset images, training samples), or null for anything else: outside the
   * library, missing, or not an image (the database and settings are never served).
   */
  resolveFile(rel: string): string | null {
    if (!/^(images|assets|datasets|training)\//.test(rel) || !/\.(png|jpe?g|webp|bmp)$/i.test(rel)) return null;
    return resolveInside(this.dir, rel);
  }

  /**
   * A library image for display at most `size` px on its longer side: a cached
   * thumbnail (made on first request) for the gallery's sizes, the file itself otherwise.
   */
  resolveDisplayFile(rel: string, size: number | null): string | null {
    const file = this.resolveFile(rel);
    if (!file || !size || !THUMB_SIZES.includes(size as (typeof THUMB_SIZES)[number])) return file;
    try {
      return thumbnailFor(file, size, path.join(this.dir, 'thumbs')) ?? file;
    } catch {
      return file;
    }
  }

  /**
   * Remove what a crash can leave behind: temp files of interrupted writes and
   * image files no row points at. Returns the number of files removed.
   */
  sweepOrphans(): number {
    const known = new Set((this.db.prepare('SELECT path FROM images').all() as { path: string }[]).map((r) => r.path));
    let removed = 0;
    const walk = (absDir: string, relDir: string) => {
      for (const entry of fs.readdirSync(absDir, { withFileTypes: true })) {
        const rel = `${relDir}/${entry.name}`;
        const abs = path.join(absDir, entry.name);
        if (entry.isDirectory()) walk(abs, rel);
        else if (entry.isFile() && (entry.name.includes(TEMP_MARK) || !known.has(rel))) {
          fs.rmSync(abs, { force: true });
          removed++;
        }
      }
    };
    walk(this.imagesDir, 'images');
    return removed;
  }

  // ------------------------------------------------------------------ assets

  /**
   * Store a PNG by content hash under assets/ (canvas composites, masks, control
   * images, imports). The same bytes always give the same path, so a generation
   * that names an asset can be reproduced as long as the library exists.
   */
  putAsset(data: Uint8Array): { path: string; width: number; height: number } {
    let size: { width: number; height: number };
    try {
      size = pngSize(data);
    } catch (err) {
      throw new AtelierError('BAD_REQUEST', `That image is not a valid PNG (${(err as Error).message}).`);
    }
    if (size.width > 8192 || size.height > 8192) throw new AtelierError('BAD_REQUEST', `That image is ${size.width}×${size.height}: larger than Atelier handles (8192×8192).`);
    // Whole and undamaged (every chunk there, up to IEND, with its checksum): a cut-off upload is
    // refused here, not stored by its hash and found broken by the worker later.
    const buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const info = imageInfo(buf);
    const damaged = info.ok ? pngChecksumError(buf) : info.reason;
    if (damaged) throw new AtelierError('BAD_REQUEST', `That image is not a valid PNG (${damaged}).`);
    const hash = sha256(data);
    const rel = `assets/${hash.slice(0, 2)}/${hash}.png`;
    const abs = path.join(this.dir, ...rel.split('/'));
    if (!fs.existsSync(abs)) writeFileAtomic(abs, data);
    return { path: rel, ...size };
  }

  /** Absolute path of an asset or library image given by its library-relative path; NOT_FOUND otherwise. */
  requireFile(rel: string): string {
    const abs = this.resolveFile(rel);
    if (!abs || !(rel.startsWith('assets/') || rel.startsWith('images/'))) throw new AtelierError('NOT_FOUND', `No file ${rel} in the library.`);
    return abs;
  }

  // ------------------------------------------------------------------ models

  upsertModel(m: Omit<ModelRecord, 'id' | 'addedAt' | 'nativeSize'> & { nativeSize?: number | null }): ModelRecord {
    const existing = this.db.prepare('SELECT * FROM models WHERE path = ?').get(m.path) as ModelRow | undefined;
    if (existing) {
      this.db
        .prepare(
          'UPDATE models SET name=@name, kind=@kind, format=@format, family=@family, size_bytes=@size_bytes, source=@source, hash=COALESCE(@hash, hash), native_size=@native_size WHERE id=@id',
        )
        .run({ id: existing.id, name: m.name, kind: m.kind, format: m.format, family: m.family, size_bytes: m.sizeBytes, source: m.source, hash: m.hash, native_size: m.nativeSize ?? null });
      return this.getModel(existing.id);
    }
    const id = randomUUID();
    this.db
      .prepare(
        'INSERT INTO models (id, name, path, kind, format, family, size_bytes, source, hash, native_size, added_at) VALUES (@id,@name,@path,@kind,@format,@family,@size_bytes,@source,@hash,@native_size,@added_at)',
      )
      .run({ id, name: m.name, path: m.path, kind: m.kind, format: m.format, family: m.family, size_bytes: m.sizeBytes, source: m.source, hash: m.hash, native_size: m.nativeSize ?? null, added_at: this.now().toISOString() });
    return this.getModel(id);
  }

  getModel(id: string): ModelRecord {
    const row = this.db.prepare('SELECT * FROM models WHERE id = ?').get(id) as ModelRow | undefined;
    if (!row) throw new AtelierError('MODEL_NOT_FOUND', `The model ${id} is not in the library any more: rescan or pick another.`);
    return toModel(row);
  }

  listModels(): ModelRecord[] {
    return (this.db.prepare('SELECT * FROM models ORDER BY kind, name COLLATE NOCASE').all() as ModelRow[]).map(toModel);
  }

  removeModelsNotIn(paths: Set<string>, source: string): void {
    const rows = this.db.prepare('SELECT id, path FROM models WHERE source = ?').all(source) as { id: string; path: string }[];
    const del = this.db.prepare('DELETE FROM models WHERE id = ?');
    for (const r of rows) if (!paths.has(r.path)) del.run(r.id);
  }

  setModelHash(id: string, hash: string, key: string | null = null): void {
    this.db.prepare('UPDATE models SET hash = ?, hash_key = ? WHERE id = ?').run(hash, key, id);
  }

  modelHashKey(id: string): string | null {
    return (this.db.prepare('SELECT hash_key FROM models WHERE id = ?').get(id) as { hash_key: string | null } | undefined)?.hash_key ?? null;
  }

  /** A library model by its A1111 hash, else by name (resolving dropped images' metadata). */
  findModel(kind: ModelRecord['kind'], hash: string | null | undefined, name: string | null | undefined): ModelRecord | null {
    const byHash = hash ? (this.db.prepare('SELECT * FROM models WHERE kind = ? AND hash = ? LIMIT 1').get(kind, hash) as ModelRow | undefined) : undefined;
    if (byHash) return toModel(byHash);
    const byName = name ? (this.db.prepare('SELECT * FROM models WHERE kind = ? AND name = ? COLLATE NOCASE LIMIT 1').get(kind, name) as ModelRow | undefined) : undefined;
    return byName ? toModel(byName) : null;
  }
}

function cloudOptions(paramsJson: string): Generation['cloud'] {
  try {
    const c = (JSON.parse(paramsJson) as { cloud?: Record<string, unknown> }).cloud ?? {};
    return { size: String(c.size ?? ''), quality: String(c.quality ?? ''), style: String(c.style ?? '') };
  } catch {
    return { size: '', quality: '', style: '' };
  }
}
