/**
 * Training datasets: one folder per dataset under `<data>/datasets/<id>/`, laid
 * out the way kohya's scripts read it (each image with its caption in
 * `<stem>.txt` beside it), plus `dataset.json` (name, trigger word, and the
 * size of each image as it was vetted). The folder is the truth: a caption
 * edited by hand in a text editor is what the next listing shows.
 *
 * Imports never fail on one bad file: each is vetted from its bytes and, when
 * it is not a usable image, listed with the reason and left out.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Dataset, DatasetImage, DatasetSummary, ImportResult, SkippedFile } from '../../../shared/contract';
import { AtelierError } from '../../../shared/errors';
import { writeFileAtomic } from '../../lib/fsx';
import { vetTrainingImage, type ImageFormat } from '../../lib/imageinfo';

const IMAGE_EXT = /\.(png|jpe?g|webp|bmp)$/i;
/** Anything smaller cannot be bucketed to any training size worth having. */
export const MIN_IMAGE_SIDE = 32;
const MAX_IMAGE_BYTES = 40 * 1024 * 1024;
const MAX_IMAGES = 2000;

interface Meta {
  id: string;
  name: string;
  trigger: string;
  createdAt: string;
  images: Record<string, { width: number; height: number; format: ImageFormat }>;
}

const EXT_OF: Record<ImageFormat, string> = { png: '.png', jpeg: '.jpg', webp: '.webp', bmp: '.bmp', gif: '.gif' };

/** A safe file stem from a user's file name: letters, digits, `-_.`, at most 80 chars. */
function safeStem(name: string): string {
  const stem = path.basename(name).replace(/\.[^.]*$/, '');
  const s = stem
    .normalize('NFKD')
    .replace(/[^\w.-]+/g, '_')
    .replace(/^[._]+/, '')
    .slice(0, 80);
  return s || 'image';
}

function cleanCaption(text: string): string {
  return text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim().slice(0, 2000);
}

export class DatasetsService {
  constructor(
    private root: string,
    private libraryDir: string,
    private onChanged: (id: string) => void = () => {},
  ) {
    fs.mkdirSync(root, { recursive: true });
  }

  private dirOf(id: string): string {
    if (!/^[0-9a-f-]{36}$/.test(id)) throw new AtelierError('NOT_FOUND', `No dataset ${id}.`);
    const dir = path.join(this.root, id);
    if (!fs.existsSync(path.join(dir, 'dataset.json'))) throw new AtelierError('NOT_FOUND', `No dataset ${id}: it may have been deleted.`);
    return dir;
  }

  /** Absolute folder of a dataset (what the worker trains on). */
  folder(id: string): string {
    return this.dirOf(id);
  }

  private readMeta(id: string): Meta {
    const file = path.join(this.dirOf(id), 'dataset.json');
    try {
      const m = JSON.parse(fs.readFileSync(file, 'utf8')) as Meta;
      m.images ??= {};
      return m;
    } catch (err) {
      throw new AtelierError('INTERNAL', `The dataset file ${file} is damaged (${(err as Error).message}).`);
    }
  }

  private writeMeta(m: Meta): void {
    writeFileAtomic(path.join(this.root, m.id, 'dataset.json'), JSON.stringify(m, null, 1));
  }

  private rel(abs: string): string {
    return path.relative(this.libraryDir, abs).split(path.sep).join('/');
  }

  create(name: string, trigger = ''): Dataset {
    const id = randomUUID();
    fs.mkdirSync(path.join(this.root, id), { recursive: true });
    this.writeMeta({ id, name, trigger, createdAt: new Date().toISOString(), images: {} });
    this.onChanged(id);
    return this.get(id);
  }

  update(id: string, patch: { name?: string; trigger?: string }): Dataset {
    const m = this.readMeta(id);
    if (patch.name !== undefined) m.name = patch.name;
    if (patch.trigger !== undefined) m.trigger = patch.trigger;
    this.writeMeta(m);
    this.onChanged(id);
    return this.get(id);
  }

  delete(id: string): boolean {
    const dir = this.dirOf(id);
    fs.rmSync(dir, { recursive: true, force: true });
    this.onChanged(id);
    return true;
  }

  get(id: string): Dataset {
    const dir = this.dirOf(id);
    const m = this.readMeta(id);
    const images: DatasetImage[] = [];
    for (const file of fs.readdirSync(dir).sort((a, b) => a.localeCompare(b, undefined, { numeric: true }))) {
      if (!IMAGE_EXT.test(file)) continue;
      const abs = path.join(dir, file);
      let info = m.images[file];
      if (!info) {
        // Put there by hand: vet it now.
        const v = vetTrainingImage(fs.readFileSync(abs), MIN_IMAGE_SIDE);
        if (!v.ok) continue;
        info = { width: v.width, height: v.height, format: v.format };
      }
      const txt = path.join(dir, `${file.replace(/\.[^.]*$/, '')}.txt`);
      const caption = fs.existsSync(txt) ? cleanCaption(fs.readFileSync(txt, 'utf8')) : '';
      images.push({ file, path: this.rel(abs), caption, ...info });
    }
    return { id: m.id, name: m.name, trigger: m.trigger, createdAt: m.createdAt, images };
  }

  list(): DatasetSummary[] {
    const out: DatasetSummary[] = [];
    for (const id of fs.readdirSync(this.root)) {
      try {
        const d = this.get(id);
        out.push({ id: d.id, name: d.name, trigger: d.trigger, createdAt: d.createdAt, imageCount: d.images.length, cover: d.images[0]?.path ?? null });
      } catch {
        /* not a dataset folder */
      }
    }
    return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  /** Add images (with optional captions keyed by stem). Vetted one by one; bad ones are skipped with the reason. */
  private add(id: string, files: { name: string; data: () => Buffer; size: number }[], captions: Map<string, string>): ImportResult {
    const dir = this.dirOf(id);
    const m = this.readMeta(id);
    const added: string[] = [];
    const skipped: SkippedFile[] = [];
    const taken = new Set(fs.readdirSync(dir).map((f) => f.replace(/\.[^.]*$/, '').toLowerCase()));
    let count = Object.keys(m.images).length;
    for (const f of files) {
      if (count >= MAX_IMAGES) {
        skipped.push({ file: f.name, reason: `the dataset already has ${MAX_IMAGES} images` });
        continue;
      }
      if (f.size > MAX_IMAGE_BYTES) {
        skipped.push({ file: f.name, reason: `${Math.round(f.size / 1e6)} MB: larger than ${MAX_IMAGE_BYTES / 1e6} MB` });
        continue;
      }
      let data: Buffer;
      try {
        data = f.data();
      } catch (err) {
        skipped.push({ file: f.name, reason: `cannot be read (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})` });
        continue;
      }
      const v = vetTrainingImage(data, MIN_IMAGE_SIDE);
      if (!v.ok) {
        skipped.push({ file: f.name, reason: v.reason });
        continue;
      }
      const base = safeStem(f.name);
      let stem = base;
      for (let i = 2; taken.has(stem.toLowerCase()); i++) stem = `${base}-${i}`;
      taken.add(stem.toLowerCase());
      const file = `${stem}${EXT_OF[v.format]}`;
      const origStem = path.basename(f.name).replace(/\.[^.]*$/, '');
      const caption = captions.get(origStem.toLowerCase());
      // The caption first: an image never appears without the caption it came with.
      if (caption !== undefined) writeFileAtomic(path.join(dir, `${stem}.txt`), cleanCaption(caption));
      writeFileAtomic(path.join(dir, file), data);
      m.images[file] = { width: v.width, height: v.height, format: v.format };
      added.push(file);
      count++;
    }
    // Every file refused: the dataset is as it was, and nobody needs to hear that it changed.
    if (added.length) {
      this.writeMeta(m);
      this.onChanged(id);
    }
    return { dataset: this.get(id), added, skipped };
  }

  importFolder(id: string, folder: string): ImportResult {
    const abs = path.resolve(folder);
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(abs, { withFileTypes: true });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new AtelierError('NOT_FOUND', code === 'ENOTDIR' ? `${abs} is a file, not a folder.` : `Cannot open the folder ${abs} (${code ?? (err as Error).message}).`);
    }
    const captions = new Map<string, string>();
    const files: { name: string; data: () => Buffer; size: number }[] = [];
    const skipped: SkippedFile[] = [];
    for (const e of entries.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }))) {
      if (!e.isFile() || e.name.startsWith('.')) continue;
      const p = path.join(abs, e.name);
      if (/\.txt$/i.test(e.name)) {
        try {
          captions.set(e.name.replace(/\.txt$/i, '').toLowerCase(), fs.readFileSync(p, 'utf8'));
        } catch {
          /* an unreadable caption: the image comes in uncaptioned */
        }
        continue;
      }
      if (/\.(json|toml|yaml|yml|caption|npz)$/i.test(e.name)) continue; // kohya's side files
      let size = 0;
      try {
        size = fs.statSync(p).size;
      } catch {
        /* reported by data() */
      }
      files.push({ name: e.name, size, data: () => fs.readFileSync(p) });
    }
    if (!files.length) throw new AtelierError('BAD_REQUEST', `${abs} has no image files (PNG, JPEG, WebP or BMP).`);
    const r = this.add(id, files, captions);
    return { ...r, skipped: [...skipped, ...r.skipped] };
  }

  addFiles(id: string, uploads: { name: string; data: string }[]): ImportResult {
    const captions = new Map<string, string>();
    const files: { name: string; data: () => Buffer; size: number }[] = [];
    for (const u of uploads) {
      if (/\.txt$/i.test(u.name)) captions.set(path.basename(u.name).replace(/\.txt$/i, '').toLowerCase(), Buffer.from(u.data, 'base64').toString('utf8'));
      else files.push({ name: u.name, size: Math.floor((u.data.length * 3) / 4), data: () => Buffer.from(u.data, 'base64') });
    }
    if (!files.length) throw new AtelierError('BAD_REQUEST', 'No image among the dropped files: drop PNG, JPEG, WebP or BMP images (with .txt captions if you have them).');
    return this.add(id, files, captions);
  }

  setCaption(id: string, file: string, caption: string): DatasetImage {
    const d = this.get(id);
    const img = d.images.find((i) => i.file === file);
    if (!img) throw new AtelierError('NOT_FOUND', `No image ${file} in the dataset ${d.name}.`);
    const text = cleanCaption(caption);
    writeFileAtomic(path.join(this.dirOf(id), `${file.replace(/\.[^.]*$/, '')}.txt`), text);
    this.onChanged(id);
    return { ...img, caption: text };
  }

  removeImage(id: string, file: string): Dataset {
    const dir = this.dirOf(id);
    const m = this.readMeta(id);
    if (!IMAGE_EXT.test(file) || path.basename(file) !== file || !fs.existsSync(path.join(dir, file))) throw new AtelierError('NOT_FOUND', `No image ${file} in the dataset ${m.name}.`);
    delete m.images[file];
    this.writeMeta(m);
    fs.rmSync(path.join(dir, file), { force: true });
    fs.rmSync(path.join(dir, `${file.replace(/\.[^.]*$/, '')}.txt`), { force: true });
    this.onChanged(id);
    return this.get(id);
  }
}
