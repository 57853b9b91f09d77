import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createHash } from 'node:crypto';
import { readPngText } from '../../src/main/lib/pngchunks';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HistoryStore, type NewGeneration } from '../../src/main/services/history/store';
import { MIGRATIONS } from '../../src/main/services/history/migrations';
import { makePng, tmpDir } from '../helpers';

const stores: HistoryStore[] = [];
function open(dir = tmpDir(), now?: () => Date) {
  const s = new HistoryStore({ dir, now });
  stores.push(s);
  return s;
}
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

function gen(prompt: string, images: NewGeneration['images'] = [{ data: makePng(8, 8), seed: 1 }]): NewGeneration {
  return {
    backend: 'local',
    mode: 'txt2img',
    prompt,
    negativePrompt: 'blurry',
    modelId: null,
    modelName: 'tiny',
    modelHash: null,
    sampler: 'Euler a',
    steps: 20,
    cfg: 7,
    seed: 1,
    width: 8,
    height: 8,
    batch: images.length,
    strength: null,
    control: null,
    loras: [{ name: 'brand', hash: 'abc', weight: 0.8 }],
    device: 'cpu/float32',
    timings: { total_ms: 1234 },
    costUsd: null,
    params: { prompt },
    images,
  };
}

describe('HistoryStore', () => {
  it('opens in WAL mode with foreign keys and runs every migration', () => {
    const s = open();
    const db = new Database(s.dbPath, { readonly: true });
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
    db.close();
    expect(s.schemaVersion).toBe(MIGRATIONS.length);
  });

  it('adds a generation with its files and reads every parameter back', () => {
    const s = open();
    const g = s.addGeneration(gen('a red circle', [{ data: makePng(16, 8), seed: 5 }, { data: makePng(16, 8, [1, 2, 3]), seed: 6 }]));
    expect(g.images).toHaveLength(2);
    expect(g.images.map((i) => [i.width, i.height, i.seed, i.index])).toEqual([
      [16, 8, 5, 0],
      [16, 8, 6, 1],
    ]);
    for (const img of g.images) {
      const file = path.join(s.dir, img.path);
      expect(fs.readFileSync(file).subarray(1, 4).toString()).toBe('PNG');
    }
    const back = s.get(g.id);
    expect(back.prompt).toBe('a red circle');
    expect(back.loras).toEqual([{ name: 'brand', hash: 'abc', weight: 0.8 }]);
    expect(back.timings).toEqual({ total_ms: 1234 });
    expect(back.images[1].sha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('lists newest first, paged, with full-text search whose operators are taken literally', () => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    const s = open(tmpDir(), () => new Date((t += 1000)));
    for (let i = 0; i < 7; i++) s.addGeneration(gen(`castle number ${i}`));
    s.addGeneration(gen('100% pure _snow_'));
    const p1 = s.list({ limit: 3 });
    expect(p1.total).toBe(8);
    expect(p1.items.map((g) => g.prompt)).toEqual(['100% pure _snow_', 'castle number 6', 'castle number 5']);
    expect(p1.nextOffset).toBe(3);
    expect(s.list({ limit: 3, offset: 3 }).total).toBeNull(); // counted on the first page only
    const last = s.list({ limit: 3, offset: 6 });
    expect(last.items.map((g) => g.prompt)).toEqual(['castle number 1', 'castle number 0']);
    expect(last.nextOffset).toBeNull();
    expect(s.list({ query: 'CASTLE' }).total).toBe(7);
    expect(s.list({ query: '100%' }).items.map((g) => g.prompt)).toEqual(['100% pure _snow_']);
    expect(s.list({ query: '%' }).total).toBe(0); // punctuation alone matches nothing, not "everything"
    expect(s.list({ query: 'blurry' }).total).toBe(8); // negative prompt too
    expect(s.list({ query: 'cast numb' }).total).toBe(7); // words match by prefix, all must match
    expect(s.list({ query: 'castle snow' }).total).toBe(0);
    expect(s.list({ query: 'castle OR snow' }).total).toBe(0); // no FTS operators from user text
    expect(s.list({ query: '"unbalanced NEAR(' }).total).toBe(0); // never a syntax error
    expect(s.list({ query: 'brand' }).total).toBe(8); // LoRA names are searched too
  });

  it('filters by model, LoRA, sampler, favorite, date and board', () => {
    let t = Date.parse('2026-01-01T00:00:00Z');
    const s = open(tmpDir(), () => new Date((t += 86400000)));
    const a = s.addGeneration({ ...gen('alpha'), modelName: 'dreamshaper', sampler: 'DPM++ 2M Karras', loras: [] });
    const b = s.addGeneration(gen('beta'));
    const c = s.addGeneration({ ...gen('gamma'), backend: 'cloud' });
    expect(s.list({ model: 'dreamshaper' }).items.map((g) => g.id)).toEqual([a.id]);
    expect(s.list({ lora: 'brand' }).items.map((g) => g.id)).toEqual([c.id, b.id]);
    expect(s.list({ sampler: 'DPM++ 2M Karras' }).total).toBe(1);
    expect(s.list({ backend: 'cloud' }).items.map((g) => g.id)).toEqual([c.id]);
    expect(s.setFavorite([a.id, c.id], true)).toBe(2);
    expect(s.list({ favorite: true }).items.map((g) => g.id)).toEqual([c.id, a.id]);
    expect(s.get(a.id).favorite).toBe(true);
    expect(s.list({ from: b.createdAt }).total).toBe(2);
    expect(s.list({ from: a.createdAt, to: b.createdAt }).items.map((g) => g.id)).toEqual([a.id]);
    const board = s.createBoard('Keepers');
    expect(() => s.createBoard('keepers')).toThrow(/already a board/);
    expect(s.addToBoard(board.id, [a.id, b.id, 'missing']).count).toBe(2);
    expect(s.list({ boardId: board.id }).total).toBe(2);
    expect(s.removeFromBoard(board.id, [a.id]).count).toBe(1);
    expect(s.facets()).toEqual({ models: ['dreamshaper', 'tiny'], samplers: ['DPM++ 2M Karras', 'Euler a'], loras: ['brand'] });
    // Deleting a generation takes it out of search and boards.
    s.delete([b.id]);
    expect(s.list({ query: 'beta' }).total).toBe(0);
    expect(s.getBoard(board.id).count).toBe(0);
  });

  it('counts separately from the page when asked, and indexes LoRAs written before migration 5', () => {
    const dir = tmpDir();
    let t = Date.parse('2026-01-01T00:00:00Z');
    const s = open(dir, () => new Date((t += 1000)));
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push(s.addGeneration({ ...gen(`p${i}`), loras: i % 2 ? [] : [{ name: 'ink', hash: null, weight: 1 }, { name: 'brand', hash: 'abc', weight: 0.5 }] }).id);
    const page = s.list({ lora: 'ink', limit: 2, withTotal: false });
    expect(page.items.map((g) => g.prompt)).toEqual(['p4', 'p2']);
    expect(page.total).toBeNull();
    expect(s.count({ lora: 'ink' })).toEqual({ total: 3, capped: false });
    expect(s.list({ lora: 'ink', limit: 2 }).total).toBe(3);
    s.close();
    // A database from before migration 5: no generation_loras table.
    const db = new Database(path.join(dir, 'atelier.db'));
    db.exec('DROP INDEX generations_cloud_spend; ALTER TABLE generations DROP COLUMN revised_prompt;'); // migration 6
    db.exec('DROP TRIGGER generation_loras_insert; DROP TRIGGER generation_loras_delete; DROP TABLE generation_loras;');
    db.pragma('user_version = 4');
    db.close();
    const again = open(dir);
    expect(again.schemaVersion).toBe(MIGRATIONS.length);
    expect(again.list({ lora: 'brand' }).items.map((g) => g.prompt)).toEqual(['p4', 'p2', 'p0']);
    expect(again.facets().loras).toEqual(['brand', 'ink']);
    again.delete([ids[4]]);
    expect(again.count({ lora: 'ink' })).toEqual({ total: 2, capped: false });
    expect(again.list({ lora: 'ink' }).items.map((g) => g.prompt)).toEqual(['p2', 'p0']);
  });

  it('deletes rows and files together', () => {
    const s = open();
    const a = s.addGeneration(gen('keep'));
    const b = s.addGeneration(gen('drop', [{ data: makePng(4, 4), seed: 1 }, { data: makePng(4, 4), seed: 2 }]));
    const files = b.images.map((i) => path.join(s.dir, i.path));
    expect(s.delete([b.id, 'no-such-id'])).toBe(1);
    for (const f of files) expect(fs.existsSync(f)).toBe(false);
    expect(() => s.get(b.id)).toThrow(/No history entry/);
    expect(s.get(a.id).images).toHaveLength(1);
    const db = new Database(s.dbPath, { readonly: true });
    expect(db.prepare('SELECT COUNT(*) n FROM images').get()).toEqual({ n: 1 });
    db.close();
  });

  it('refuses a corrupt image and leaves neither row nor file', () => {
    const s = open();
    const good = makePng(4, 4);
    expect(() => s.addGeneration(gen('bad', [{ data: good, seed: 1 }, { data: Buffer.from('not a png at all, really'), seed: 2 }]))).toThrow(/not a valid PNG/);
    expect(s.list().total).toBe(0);
    expect(s.sweepOrphans()).toBe(0); // the first image's file was removed too
  });

  it('refuses a database written by a newer version, untouched', () => {
    const dir = tmpDir();
    open(dir).close();
    const db = new Database(path.join(dir, 'atelier.db'));
    db.pragma(`user_version = ${MIGRATIONS.length + 1}`);
    db.close();
    expect(() => new HistoryStore({ dir })).toThrow(/newer Atelier/);
  });

  it('writes A1111 parameters and Atelier JSON into every PNG, each image with its own seed', () => {
    const s = open();
    const g = s.addGeneration(gen('a red circle', [{ data: makePng(8, 8), seed: 41 }, { data: makePng(8, 8), seed: 42 }]));
    const texts = g.images.map((im) => readPngText(fs.readFileSync(path.join(s.dir, im.path))));
    expect(texts[0].parameters).toBe('a red circle <lora:brand:0.8>\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 41, Size: 8x8, Model: tiny, Lora hashes: "brand: abc", Version: Atelier');
    expect(JSON.parse(texts[1].atelier).params).toMatchObject({ seed: 42, prompt: 'a red circle' });
    // The stored hash is of the bytes on disk (metadata included).
    expect(g.images[0].sha256).toBe(createHash('sha256').update(fs.readFileSync(path.join(s.dir, g.images[0].path))).digest('hex'));
  });

  it('resolves library files and refuses paths that leave it', () => {
    const s = open();
    const g = s.addGeneration(gen('x'));
    expect(s.resolveFile(g.images[0].path)).toBe(fs.realpathSync(path.join(s.dir, g.images[0].path)));
    const outside = path.join(tmpDir(), 'secret.txt');
    fs.writeFileSync(outside, 'secret');
    fs.symlinkSync(outside, path.join(s.imagesDir, 'link.png'));
    for (const bad of ['../atelier.db', 'images/../../etc/passwd', '/etc/passwd', 'images/link.png', 'images\\x.png', 'images/%2e%2e/x', 'C:/x', '', 'images//x', 'images/\0.png', 'atelier.db', 'settings.json', 'datasets/x/dataset.json', 'training/x/checkpoint/optimizer.pt']) {
      expect(s.resolveFile(bad), bad).toBeNull();
    }
  });

  it('sweeps temp files and orphan images left by a crash', () => {
    const s = open();
    const g = s.addGeneration(gen('x'));
    fs.writeFileSync(path.join(s.imagesDir, 'half.png.tmp-abc'), 'x');
    fs.mkdirSync(path.join(s.imagesDir, '2020-01'), { recursive: true });
    fs.writeFileSync(path.join(s.imagesDir, '2020-01', 'orphan.png'), makePng(2, 2));
    expect(s.sweepOrphans()).toBe(2);
    expect(fs.existsSync(path.join(s.dir, g.images[0].path))).toBe(true);
  });

  it('survives SIGKILL mid-write: integrity holds and every row has its file', async () => {
    const dir = tmpDir();
    open(dir).close();
    // A child process writes generations in a loop until it is killed.
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(__dirname, 'history-writer.fixture.ts'), dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => {
      let seen = 0;
      child.stdout.on('data', (d: Buffer) => {
        seen += d.toString().split('\n').filter(Boolean).length;
        if (seen >= 20) resolve();
      });
    });
    child.kill('SIGKILL');
    await new Promise((r) => child.on('exit', r));
    const s = open(dir);
    const db = new Database(s.dbPath, { readonly: true });
    expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
    const rows = db.prepare('SELECT path FROM images').all() as { path: string }[];
    db.close();
    expect(rows.length).toBeGreaterThanOrEqual(20);
    for (const r of rows) expect(fs.existsSync(path.join(dir, r.path)), r.path).toBe(true);
    s.sweepOrphans();
    const files = fs.readdirSync(s.imagesDir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile());
    expect(files.length).toBe(rows.length);
  });
});
