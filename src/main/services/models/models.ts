/**
 * The model library (baseline): the folders in settings plus the app's own
 * `resources/models` are scanned for safetensors files and diffusers folders;
 * what each file is comes from its header keys, never from its name. Files that
 * are not safetensors (pickles, text) are listed in the log and skipped.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { ModelRecord } from '../../../shared/contract';
import { AtelierError } from '../../../shared/errors';
import type { HistoryStore } from '../history/store';
import { NotSafetensorsError, readSafetensorsHeader } from './safetensors';

type Classified = Pick<ModelRecord, 'kind' | 'format' | 'family'> & { nativeSize?: number | null };

const FAMILY_SIZE: Record<string, number> = { sd15: 512, sdxl: 1024 };

/** UNet sample size × the VAE's downscale (2^(blocks-1)), read from a diffusers folder's configs. */
function diffusersNativeSize(dir: string): number | null {
  try {
    const unet = JSON.parse(fs.readFileSync(path.join(dir, 'unet', 'config.json'), 'utf8'));
    const vae = JSON.parse(fs.readFileSync(path.join(dir, 'vae', 'config.json'), 'utf8'));
    const scale = 2 ** ((vae.block_out_channels?.length ?? 4) - 1);
    const size = Number(unet.sample_size) * scale;
    return Number.isFinite(size) && size > 0 ? size : null;
  } catch {
    return null;
  }
}

export function classifySafetensors(file: string): Classified | null {
  const { tensors } = readSafetensorsHeader(file);
  const keys = Object.keys(tensors);
  const has = (prefix: string) => keys.some((k) => k.startsWith(prefix));
  const hasPart = (part: string) => keys.some((k) => k.includes(part));
  if (hasPart('lora_down') || hasPart('lora_up') || hasPart('.lora_A.') || hasPart('.lora_B.')) {
    // The cross-attention width decides: SDXL's UNet attends to 2048-wide text features, SD 1.5's to 768.
    const ctx = keys.find((k) => /attn2[._]to_k/.test(k) && /(lora_down|lora_A)/.test(k));
    const width = ctx ? tensors[ctx].shape[1] : undefined;
    const family = has('lora_te2_') || has('lora_te1_') || hasPart('text_encoder_2') || width === 2048 ? 'sdxl' : keys.length ? 'sd15' : 'unknown';
    return { kind: 'lora', format: 'single_file', family };
  }
  if (has('control_model.') || has('controlnet_cond_embedding.')) {
    return { kind: 'controlnet', format: 'single_file', family: has('control_model.label_emb') || hasPart('add_embedding') ? 'sdxl' : 'sd15' };
  }
  if (has('conditioner.embedders.1.')) return { kind: 'checkpoint', format: 'single_file', family: 'sdxl', nativeSize: 1024 };
  if (has('model.diffusion_model.')) return { kind: 'checkpoint', format: 'single_file', family: 'sd15', nativeSize: 512 };
  if (has('encoder.down.') || has('first_stage_model.') || has('decoder.conv_in.')) return { kind: 'vae', format: 'single_file', family: 'unknown' };
  return null;
}

/** A JSON file that must hold an object; throws a plain Error naming the file otherwise. */
function readJsonObject(file: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${path.basename(file)} is not valid JSON: ${(err as Error).message}`);
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${path.basename(file)} is not a JSON object`);
  return v as Record<string, unknown>;
}

export function classifyDiffusersFolder(dir: string): Classified | null {
  const index = path.join(dir, 'model_index.json');
  if (fs.existsSync(index)) {
    const cls = String(readJsonObject(index)._class_name ?? '');
    if (!cls.includes('StableDiffusion')) return null;
    const family = cls.includes('XL') ? 'sdxl' : 'sd15';
    return { kind: 'checkpoint', format: 'diffusers', family, nativeSize: diffusersNativeSize(dir) ?? FAMILY_SIZE[family] };
  }
  const config = path.join(dir, 'config.json');
  if (fs.existsSync(config)) {
    const cfg = readJsonObject(config);
    if (cfg._class_name === 'ControlNetModel') {
      return { kind: 'controlnet', format: 'diffusers', family: cfg.addition_embed_type === 'text_time' ? 'sdxl' : 'sd15' };
    }
  }
  return null;
}

function dirSize(dir: string): number {
  let total = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    total += e.isDirectory() ? dirSize(p) : e.isFile() ? fs.statSync(p).size : 0;
  }
  return total;
}

/** Bytes of a safetensors file after its JSON header (what A1111's LoRA hash covers: metadata edits do not change it). */
function safetensorsDataOffset(file: string): number {
  const fd = fs.openSync(file, 'r');
  try {
    const b = Buffer.alloc(8);
    fs.readSync(fd, b, 0, 8, 0);
    return 8 + Number(b.readBigUInt64LE(0));
  } finally {
    fs.closeSync(fd);
  }
}

async function sha256File(files: { path: string; start?: number }[]): Promise<string> {
  const h = createHash('sha256');
  for (const f of files) {
    await new Promise<void>((resolve, reject) => {
      fs.createReadStream(f.path, { start: f.start ?? 0, highWaterMark: 4 << 20 })
        .on('data', (c) => h.update(c))
        .on('end', () => resolve())
        .on('error', reject);
    });
  }
  return h.digest('hex');
}

function weightFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && e.name.endsWith('.safetensors')) out.push(p);
    }
  };
  walk(dir);
  return out;
}

export class ModelsService {
  private hashing = new Map<string, Promise<string | null>>();

  constructor(
    private store: HistoryStore,
    private roots: () => { dir: string; source: string }[],
    private log: (line: string) => void = () => {},
  ) {}

  list(): ModelRecord[] {
    return this.store.listModels();
  }

  get(id: string): ModelRecord {
    return this.store.getModel(id);
  }

  /**
   * The model's hash as A1111 shows it, computed once and cached until the file
   * changes (size or mtime): checkpoints `sha256(file)[:10]` ("Model hash"),
   * LoRAs `sha256(data after the header)[:12]` ("Lora hashes", A1111's addnet
   * hash). A diffusers folder has no A1111 hash; its weight files are hashed
   * together so it still has a stable identity. Streams, never blocks the loop.
   */
  ensureHash(id: string): Promise<string | null> {
    const m = this.store.getModel(id);
    const running = this.hashing.get(id);
    if (running) return running;
    const p = (async () => {
      try {
        const files = m.format === 'diffusers' ? weightFiles(m.path) : [m.path];
        const key = files.map((f) => {
          const st = fs.statSync(f);
          return `${st.size}:${Math.floor(st.mtimeMs)}`;
        }).join('|');
        const cached = this.store.modelHashKey(id);
        if (m.hash && cached === key) return m.hash;
        let hash: string;
        if (m.kind === 'lora' && m.format === 'single_file') hash = (await sha256File([{ path: m.path, start: safetensorsDataOffset(m.path) }])).slice(0, 12);
        else hash = (await sha256File(files.map((f) => ({ path: f })))).slice(0, 10);
        this.store.setModelHash(id, hash, key);
        return hash;
      } catch (err) {
        this.log(`models: cannot hash ${m.path}: ${(err as Error).message}`);
        return null;
      } finally {
        this.hashing.delete(id);
      }
    })();
    this.hashing.set(id, p);
    return p;
  }

  /** Add one file or diffusers folder by path (the CLI's --model); refuses what is not a model, saying what it is. */
  register(p: string, source = 'added'): ModelRecord {
    const abs = path.resolve(p);
    const { c, stat } = this.classifyPath(abs);
    const name = path.basename(abs).replace(/\.safetensors$/i, '');
    return this.store.upsertModel({ name, path: abs, ...c, sizeBytes: stat.isDirectory() ? dirSize(abs) : stat.size, source, hash: null });
  }

  /** What a path holds, or an error that says what it is instead. */
  private classifyPath(abs: string): { c: Classified; stat: fs.Stats } {
    if (!fs.existsSync(abs)) throw new AtelierError('MODEL_NOT_FOUND', `No model at ${abs}.`);
    const stat = fs.statSync(abs);
    let c: Classified | null;
    if (stat.isDirectory()) {
      try {
        c = classifyDiffusersFolder(abs);
      } catch (err) {
        // A model_index.json or config.json that is not JSON (or not an object): say which folder, and why.
        throw new AtelierError('NOT_A_MODEL', `${abs} is a folder with a damaged model description (its ${(err as Error).message}): point at a diffusers model folder or a .safetensors file.`);
      }
      if (!c) throw new AtelierError('NOT_A_MODEL', `${abs} is a folder without a diffusers model_index.json: point at a diffusers model folder or a .safetensors file.`);
    } else if (!stat.isFile()) {
      // A FIFO, socket or device: opening it to read a header could block the process for good.
      throw new AtelierError('NOT_A_MODEL', `${path.basename(abs)} is not a regular file (a pipe, socket or device): point at a .safetensors file or a diffusers folder.`);
    } else {
      try {
        c = classifySafetensors(abs);
      } catch (err) {
        const what = err instanceof NotSafetensorsError ? err.message : (err as Error).message;
        throw new AtelierError(
          'NOT_A_MODEL',
          `${path.basename(abs)} is ${what}. Atelier loads only .safetensors files and diffusers folders, because pickle checkpoints (.ckpt, .pt, .bin) can run code when loaded; convert it to safetensors first.`,
        );
      }
      if (!c) throw new AtelierError('NOT_A_MODEL', `${path.basename(abs)} is a safetensors file, but not a Stable Diffusion checkpoint, LoRA, ControlNet or VAE Atelier knows.`);
    }
    return { c, stat };
  }

  /**
   * Import a file or diffusers folder: `link` uses it where it is (nothing copied, it stays in the
   * library across rescans); `copy` copies it into `intoDir` under a temporary name and renames it
   * when whole, so a full disk or a crash never leaves half a model in the library. Either way it
   * is checked first, and refused with the reason when it is not a model.
   */
  async importModel(p: string, mode: 'copy' | 'link', intoDir: string): Promise<ModelRecord> {
    const abs = path.resolve(p);
    if (!fs.existsSync(abs)) throw new AtelierError('MODEL_NOT_FOUND', `Nothing at ${abs}.`);
    this.classifyPath(abs); // refused before a byte is copied
    if (mode === 'link') return this.register(abs, 'linked');
    fs.mkdirSync(intoDir, { recursive: true });
    const base = path.basename(abs);
    let dest = path.join(intoDir, base);
    for (let i = 2; fs.existsSync(dest); i++) dest = path.join(intoDir, base.replace(/(\.safetensors)?$/i, ` (${i})$1`));
    const tmp = path.join(intoDir, `.tmp-${process.pid}-${Date.now()}-${base}`);
    try {
      await fs.promises.cp(abs, tmp, { recursive: true, errorOnExist: true, force: false });
      fs.renameSync(tmp, dest);
    } catch (err) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw err;
    }
    return this.register(dest, 'library');
  }

  /** Walk every root (two levels deep, as A1111/ComfyUI folders are laid out) and sync the table. */
  rescan(): ModelRecord[] {
    for (const { dir, source } of this.roots()) {
      const seen = new Set<string>();
      if (fs.existsSync(dir)) this.scanDir(dir, source, seen, 0);
      this.store.removeModelsNotIn(seen, source);
    }
    return this.list();
  }

  private scanDir(dir: string, source: string, seen: Set<string>, depth: number): void {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch (err) {
      this.log(`models: cannot read ${dir}: ${(err as Error).message}`);
      return;
    }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      try {
        if (e.isDirectory()) {
          const c = classifyDiffusersFolder(p);
          if (c) {
            seen.add(p);
            this.store.upsertModel({ name: e.name, path: p, ...c, sizeBytes: dirSize(p), source, hash: null });
          } else if (depth < 2) this.scanDir(p, source, seen, depth + 1);
        } else if (e.isFile() && e.name.toLowerCase().endsWith('.safetensors')) {
          const c = classifySafetensors(p);
          if (!c) {
            this.log(`models: ${p}: unknown architecture, skipped`);
            continue;
          }
          seen.add(p);
          this.store.upsertModel({ name: e.name.replace(/\.safetensors$/i, ''), path: p, ...c, sizeBytes: fs.statSync(p).size, source, hash: null });
        } else if (e.isFile() && /\.(ckpt|pt|pth|bin)$/i.test(e.name)) {
          this.log(`models: ${p}: pickle checkpoints can run code when loaded; convert it to .safetensors to use it`);
        }
      } catch (err) {
        const why = err instanceof NotSafetensorsError ? err.message : (err as Error).message;
        this.log(`models: ${p}: skipped (${why})`);
      }
    }
  }
}
