/**
 * The formats other tools read and write, in one place:
 *  - A1111's `parameters` text (what A1111's PNG Info, Civitai and most
 *    galleries read from a PNG), written and parsed;
 *  - ComfyUI's API-format workflow (the node graph that would make an image),
 *    exported, and parsed back from the `prompt` chunk ComfyUI writes;
 *  - Atelier's own JSON (every parameter, exact).
 * Parsing never throws: it restores what it can and says what it could not.
 */
import { SAMPLERS, type Sampler } from '../../../shared/contract';

export interface MetaLora {
  name: string;
  weight: number;
  hash?: string | null;
}

/** What an image's parameters are, in the app's terms (a subset of GenerateParams plus names). */
export interface ImageParams {
  prompt: string;
  negativePrompt: string;
  sampler: string;
  steps: number;
  cfg: number;
  seed: number;
  width: number;
  height: number;
  modelName: string;
  modelHash: string | null;
  strength: number | null;
  mode: string;
  loras: MetaLora[];
  backend?: string;
}

// ---------------------------------------------------------------- A1111

/** A1111's text: prompt (with <lora:name:w> tags, as A1111 applies them), negative, then `Key: value` pairs. */
export function formatA1111(p: ImageParams, extra: Record<string, string | number> = {}): string {
  const loraTags = p.loras.map((l) => `<lora:${l.name}:${trimNum(l.weight)}>`).join(' ');
  const lines = [loraTags ? `${p.prompt} ${loraTags}` : p.prompt];
  if (p.negativePrompt) lines.push(`Negative prompt: ${p.negativePrompt}`);
  // A cloud image has no steps, sampler, CFG or seed that would make it again: only what it was.
  const pairs: [string, string | number][] =
    p.backend === 'cloud'
      ? [['Size', `${p.width}x${p.height}`], ['Backend', 'OpenAI']]
      : [
          ['Steps', p.steps],
          ['Sampler', p.sampler],
          ['CFG scale', trimNum(p.cfg)],
          ['Seed', p.seed],
          ['Size', `${p.width}x${p.height}`],
        ];
  if (p.modelHash) pairs.push(['Model hash', p.modelHash]);
  pairs.push(['Model', p.modelName]);
  if (p.strength !== null && p.mode !== 'txt2img') pairs.push(['Denoising strength', trimNum(p.strength)]);
  const hashed = p.loras.filter((l) => l.hash);
  if (hashed.length) pairs.push(['Lora hashes', quote(hashed.map((l) => `${l.name}: ${l.hash}`).join(', '))]);
  for (const [k, v] of Object.entries(extra)) pairs.push([k, v]);
  lines.push(pairs.map(([k, v]) => `${k}: ${typeof v === 'string' && /[,:"]/.test(v) && !v.startsWith('"') ? quote(v) : v}`).join(', '));
  return lines.join('\n');
}

function trimNum(n: number): string {
  return String(Math.round(n * 10000) / 10000);
}

function quote(s: string): string {
  return JSON.stringify(s);
}

/**
 * Split A1111's last line into pairs, honouring quoted values ("Lora hashes": "a: 1, b: 2").
 * A single left-to-right scan (linear in the line's length): the text comes from any dropped PNG,
 * and a backtracking regex over a megabyte-long hostile line would hold the main process for hours.
 */
function parsePairs(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  const n = line.length;
  const isKeyChar = (c: string) => /[\w .\-/()]/.test(c);
  // Where the quoted value opened at a position closes (-1: never). Scans resume where the last one
  // ended: a scan that passed over a later opening quote would have stopped there unless that quote
  // was escaped, so from the next character on both scans agree.
  let lastFrom = -1;
  let lastClose = -1;
  const closingQuote = (open: number): number => {
    if (lastFrom >= 0 && open > lastFrom && (lastClose < 0 || open < lastClose)) return lastClose;
    let q = open + 1;
    while (q < n && line[q] !== '"') q += line[q] === '\\' ? 2 : 1;
    lastFrom = open;
    lastClose = q < n ? q : -1;
    return lastClose;
  };
  let i = 0;
  while (i < n) {
    let colon = i;
    while (colon < n && line[colon] !== ':' && line[colon] !== ',') colon++;
    if (colon >= n) break;
    if (line[colon] === ',') {
      i = colon + 1; // a part without a key
      continue;
    }
    let k = colon;
    while (k > i && isKeyChar(line[k - 1])) k--;
    const key = line.slice(k, colon).trim();
    let v = colon + 1;
    while (v < n && /\s/.test(line[v])) v++;
    let end = -1;
    if (line[v] === '"') {
      const close = closingQuote(v);
      if (close >= 0 && (close + 1 === n || line[close + 1] === ',')) end = close + 1;
    }
    if (end < 0) {
      end = line.indexOf(',', v);
      if (end < 0) end = n;
    }
    let value = line.slice(v, end).trim();
    if (value.startsWith('"')) {
      // Only a closed quote can be JSON (and a throw per part costs more than the whole scan).
      let parsed: unknown = null;
      if (value.length >= 2 && value.endsWith('"')) {
        try {
          parsed = JSON.parse(value);
        } catch {
          /* not JSON: the text between the quotes */
        }
      }
      value = typeof parsed === 'string' ? parsed : value.slice(1, -1);
    }
    if (key) out[key] = value;
    i = end + 1;
  }
  return out;
}

export interface ParsedParams {
  source: 'atelier' | 'a1111' | 'comfyui' | 'none';
  params: Partial<ImageParams>;
  /** What could not be restored, for a person. */
  notes: string[];
}

export function parseA1111(text: string): ParsedParams {
  const notes: string[] = [];
  const lines = text.replace(/\r\n/g, '\n').split('\n');
  // The parameters line is the last one that looks like "Steps: …"; everything before is prompt/negative.
  let paramIdx = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (/^\s*Steps:\s*\d+/.test(lines[i])) {
      paramIdx = i;
      break;
    }
  }
  const body = paramIdx >= 0 ? lines.slice(0, paramIdx) : lines;
  const negAt = body.findIndex((l) => l.startsWith('Negative prompt:'));
  let prompt = (negAt >= 0 ? body.slice(0, negAt) : body).join('\n').trim();
  const negativePrompt = negAt >= 0 ? [body[negAt].slice('Negative prompt:'.length), ...body.slice(negAt + 1)].join('\n').trim() : '';
  const loras: MetaLora[] = [];
  prompt = prompt
    // Bounded parts: an unclosed tag in a hostile prompt costs a few hundred steps, not the rest of the text.
    .replace(/<lora:([^:<>]{1,256})(?::(-?[\d.]{1,32}))?(?::[^<>]{0,256})?>/g, (_, name: string, w: string | undefined) => {
      loras.push({ name, weight: w === undefined ? 1 : Number(w) });
      return '';
    })
    .replace(/\s{2,}/g, ' ')
    .trim();
  const params: Partial<ImageParams> = { prompt, negativePrompt, loras };
  if (paramIdx < 0) {
    notes.push('No generation settings in the text (only a prompt).');
    return { source: 'a1111', params, notes };
  }
  const kv = parsePairs(lines.slice(paramIdx).join(', '));
  const int = (k: string) => (kv[k] !== undefined && /^\d+$/.test(kv[k]) ? Number(kv[k]) : undefined);
  const float = (k: string) => (kv[k] !== undefined && Number.isFinite(Number(kv[k])) ? Number(kv[k]) : undefined);
  if (int('Steps') !== undefined) params.steps = int('Steps');
  if (float('CFG scale') !== undefined) params.cfg = float('CFG scale');
  if (int('Seed') !== undefined) params.seed = int('Seed');
  const size = /^(\d+)x(\d+)$/.exec(kv.Size ?? '');
  if (size) {
    params.width = Number(size[1]);
    params.height = Number(size[2]);
  }
  if (kv.Model) params.modelName = kv.Model;
  if (kv['Model hash']) params.modelHash = kv['Model hash'];
  if (float('Denoising strength') !== undefined) params.strength = float('Denoising strength');
  if (kv.Sampler) {
    const schedule = kv['Schedule type'];
    const name = schedule && schedule !== 'Automatic' && !kv.Sampler.includes(schedule) ? `${kv.Sampler} ${schedule}` : kv.Sampler;
    const sampler = SAMPLERS.find((s) => s.toLowerCase() === name.toLowerCase()) ?? SAMPLERS.find((s) => s.toLowerCase() === kv.Sampler.toLowerCase());
    if (sampler) params.sampler = sampler;
    else notes.push(`The sampler "${name}" is not one Atelier has; pick one.`);
  }
  if (kv['Lora hashes']) {
    for (const part of kv['Lora hashes'].split(',')) {
      const [n, h] = part.split(':').map((x) => x.trim());
      const l = loras.find((x) => x.name === n);
      if (l && h) l.hash = h;
    }
  }
  const known = new Set(['Steps', 'Sampler', 'Schedule type', 'CFG scale', 'Seed', 'Size', 'Model', 'Model hash', 'Denoising strength', 'Lora hashes', 'Version']);
  const unknown = Object.keys(kv).filter((k) => !known.has(k));
  if (unknown.length) notes.push(`Not restored (Atelier has no such setting): ${unknown.join(', ')}.`);
  return { source: 'a1111', params, notes };
}

// ---------------------------------------------------------------- ComfyUI

const COMFY_SAMPLER: Record<Sampler, [string, string]> = {
  Euler: ['euler', 'normal'],
  'Euler a': ['euler_ancestral', 'normal'],
  'DPM++ 2M': ['dpmpp_2m', 'normal'],
  'DPM++ 2M Karras': ['dpmpp_2m', 'karras'],
  'DPM++ SDE Karras': ['dpmpp_sde', 'karras'],
  DDIM: ['ddim', 'ddim_uniform'],
  UniPC: ['uni_pc', 'normal'],
  LCM: ['lcm', 'sgm_uniform'],
};

type Node = { class_type: string; inputs: Record<string, unknown>; _meta?: { title: string } };

/**
 * The ComfyUI API-format graph (what ComfyUI's "Queue Prompt" posts and its
 * `prompt` PNG chunk holds) that makes this image with stock nodes: checkpoint,
 * LoRA chain, prompts, empty latent or the init image, KSampler, decode, save.
 * ComfyUI draws its noise differently, so the graph reproduces the settings, not the pixels.
 */
export function comfyWorkflow(p: ImageParams & { checkpointFile: string; loraFiles?: string[]; initImage?: string | null; mask?: string | null }): Record<string, Node> {
  const g: Record<string, Node> = {};
  let id = 0;
  const add = (n: Node) => {
    const key = String(++id);
    g[key] = n;
    return key;
  };
  const ckpt = add({ class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: p.checkpointFile }, _meta: { title: 'Load Checkpoint' } });
  let model: [string, number] = [ckpt, 0];
  let clip: [string, number] = [ckpt, 1];
  p.loras.forEach((l, i) => {
    const n = add({ class_type: 'LoraLoader', inputs: { lora_name: p.loraFiles?.[i] ?? `${l.name}.safetensors`, strength_model: l.weight, strength_clip: l.weight, model, clip }, _meta: { title: `LoRA ${l.name}` } });
    model = [n, 0];
    clip = [n, 1];
  });
  const pos = add({ class_type: 'CLIPTextEncode', inputs: { text: p.prompt, clip }, _meta: { title: 'Prompt' } });
  const neg = add({ class_type: 'CLIPTextEncode', inputs: { text: p.negativePrompt, clip }, _meta: { title: 'Negative prompt' } });
  let latent: [string, number];
  let denoise = 1;
  if (p.initImage && p.mode !== 'txt2img') {
    const img = add({ class_type: 'LoadImage', inputs: { image: p.initImage }, _meta: { title: 'Init image' } });
    const enc = add({ class_type: 'VAEEncode', inputs: { pixels: [img, 0], vae: [ckpt, 2] } });
    latent = [enc, 0];
    if (p.mask && p.mode === 'inpaint') {
      const m = add({ class_type: 'LoadImageMask', inputs: { image: p.mask, channel: 'red' }, _meta: { title: 'Mask' } });
      const masked = add({ class_type: 'SetLatentNoiseMask', inputs: { samples: latent, mask: [m, 0] } });
      latent = [masked, 0];
    }
    denoise = p.strength ?? 0.75;
  } else {
    latent = [add({ class_type: 'EmptyLatentImage', inputs: { width: p.width, height: p.height, batch_size: 1 } }), 0];
  }
  const [sampler_name, scheduler] = COMFY_SAMPLER[p.sampler as Sampler] ?? ['euler_ancestral', 'normal'];
  const ks = add({
    class_type: 'KSampler',
    inputs: { seed: p.seed, steps: p.steps, cfg: p.cfg, sampler_name, scheduler, denoise, model, positive: [pos, 0], negative: [neg, 0], latent_image: latent },
  });
  const dec = add({ class_type: 'VAEDecode', inputs: { samples: [ks, 0], vae: [ckpt, 2] } });
  add({ class_type: 'SaveImage', inputs: { filename_prefix: 'Atelier', images: [dec, 0] } });
  return g;
}

/** Read back a ComfyUI API graph (from its `prompt` chunk): the first KSampler and what feeds it. */
export function parseComfy(json: string): ParsedParams {
  const notes: string[] = [];
  let g: Record<string, Node>;
  try {
    g = JSON.parse(json);
    if (!g || typeof g !== 'object') throw new Error('not an object');
  } catch {
    return { source: 'comfyui', params: {}, notes: ['The ComfyUI data in this image is damaged.'] };
  }
  // Any JSON can sit in the chunk: a node is an object with a class_type and an inputs object, or it is ignored.
  const isNode = (n: unknown): n is Node =>
    !!n && typeof n === 'object' && typeof (n as Node).class_type === 'string' && !!(n as Node).inputs && typeof (n as Node).inputs === 'object';
  const nodes = Object.entries(g).filter((e): e is [string, Node] => isNode(e[1]));
  const ks = nodes.find(([, n]) => /^KSampler/.test(n.class_type));
  if (!ks) return { source: 'comfyui', params: {}, notes: ['This ComfyUI graph has no KSampler node Atelier understands.'] };
  const get = (ref: unknown): Node | undefined => {
    const n = Array.isArray(ref) && ref.length ? g[String(ref[0])] : undefined;
    return isNode(n) ? n : undefined;
  };
  const i = ks[1].inputs;
  const params: Partial<ImageParams> = { loras: [] };
  const num = (v: unknown) => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
  params.seed = num(i.seed ?? i.noise_seed);
  params.steps = num(i.steps);
  params.cfg = num(i.cfg);
  const text = (ref: unknown): string | undefined => {
    const n = get(ref);
    return n && typeof n.inputs.text === 'string' ? n.inputs.text : undefined;
  };
  params.prompt = text(i.positive);
  params.negativePrompt = text(i.negative) ?? '';
  if (params.prompt === undefined) notes.push('The prompt comes from a node Atelier does not know; type it in.');
  const sampler = Object.entries(COMFY_SAMPLER).find(([, [s, sch]]) => s === i.sampler_name && sch === i.scheduler) ?? Object.entries(COMFY_SAMPLER).find(([, [s]]) => s === i.sampler_name);
  if (sampler) params.sampler = sampler[0];
  else notes.push(`The ComfyUI sampler "${String(i.sampler_name)}" is not one Atelier has.`);
  const lat = get(i.latent_image);
  if (lat?.class_type === 'EmptyLatentImage') {
    params.width = num(lat.inputs.width);
    params.height = num(lat.inputs.height);
    params.mode = 'txt2img';
  } else if (lat) {
    params.mode = 'img2img';
    params.strength = num(i.denoise) ?? null;
    notes.push('The init image of an image-to-image graph is not inside the PNG; choose it again.');
  }
  // Walk the model input back through LoRA loaders to the checkpoint.
  let m = get(i.model);
  for (let hops = 0; m && hops < 32; hops++) {
    if (m.class_type === 'LoraLoader' || m.class_type === 'LoraLoaderModelOnly') {
      params.loras!.unshift({ name: String(m.inputs.lora_name ?? '').replace(/\.safetensors$/i, ''), weight: num(m.inputs.strength_model) ?? 1 });
      m = get(m.inputs.model);
    } else if (/CheckpointLoader/.test(m.class_type)) {
      params.modelName = String(m.inputs.ckpt_name ?? '').replace(/\.(safetensors|ckpt)$/i, '');
      break;
    } else {
      notes.push(`The model passes through a ${m.class_type} node, which Atelier cannot reproduce.`);
      break;
    }
  }
  const stock = new Set(['CheckpointLoaderSimple', 'LoraLoader', 'LoraLoaderModelOnly', 'CLIPTextEncode', 'EmptyLatentImage', 'KSampler', 'KSamplerAdvanced', 'VAEDecode', 'VAEEncode', 'SaveImage', 'PreviewImage', 'LoadImage', 'LoadImageMask', 'SetLatentNoiseMask']);
  const custom = [...new Set(nodes.map(([, n]) => n.class_type).filter((c) => !stock.has(c)))];
  if (custom.length) notes.push(`Nodes without an Atelier equivalent were left out: ${custom.join(', ')}.`);
  for (const k of Object.keys(params) as (keyof ImageParams)[]) if (params[k] === undefined) delete params[k];
  return { source: 'comfyui', params, notes };
}

// ---------------------------------------------------------------- any PNG

export const ATELIER_KEY = 'atelier';

/** What a PNG's text chunks say about how it was made: Atelier's JSON first (exact), then A1111, then ComfyUI. */
export function parseImageText(text: Record<string, string>): ParsedParams {
  if (text[ATELIER_KEY]) {
    try {
      const j = JSON.parse(text[ATELIER_KEY]) as { version?: number; params?: unknown };
      if (j && typeof j === 'object' && j.params && typeof j.params === 'object' && !Array.isArray(j.params)) return atelierParams(j.params as Record<string, unknown>);
    } catch {
      /* fall through to the other formats */
    }
  }
  if (text.parameters) return parseA1111(text.parameters);
  if (text.prompt) return parseComfy(text.prompt);
  return { source: 'none', params: {}, notes: ['This image carries no generation settings (no A1111, ComfyUI or Atelier metadata).'] };
}

/**
 * Atelier's JSON as a dropped file carries it: anyone can write that chunk, so only the fields of
 * the right type are kept (a prompt that is a number or LoRAs that are a string would otherwise
 * reach the library lookups), and the note says what was left out.
 */
function atelierParams(raw: Record<string, unknown>): ParsedParams {
  const params: Partial<ImageParams> = {};
  const dropped: string[] = [];
  const str = ['prompt', 'negativePrompt', 'sampler', 'modelName', 'mode', 'backend'] as const;
  const num = ['steps', 'cfg', 'seed', 'width', 'height'] as const;
  for (const k of str) {
    if (raw[k] === undefined) continue;
    if (typeof raw[k] === 'string') params[k] = raw[k];
    else dropped.push(k);
  }
  for (const k of num) {
    if (raw[k] === undefined) continue;
    if (typeof raw[k] === 'number' && Number.isFinite(raw[k])) params[k] = raw[k];
    else dropped.push(k);
  }
  if (raw.modelHash !== undefined) {
    if (raw.modelHash === null || typeof raw.modelHash === 'string') params.modelHash = raw.modelHash;
    else dropped.push('modelHash');
  }
  if (raw.strength !== undefined) {
    if (raw.strength === null || (typeof raw.strength === 'number' && Number.isFinite(raw.strength))) params.strength = raw.strength;
    else dropped.push('strength');
  }
  if (raw.loras !== undefined) {
    const list = Array.isArray(raw.loras) ? raw.loras : [];
    const ok = list.filter(
      (l): l is MetaLora =>
        !!l &&
        typeof l === 'object' &&
        typeof (l as MetaLora).name === 'string' &&
        typeof (l as MetaLora).weight === 'number' &&
        Number.isFinite((l as MetaLora).weight) &&
        ((l as MetaLora).hash === undefined || (l as MetaLora).hash === null || typeof (l as MetaLora).hash === 'string'),
    );
    params.loras = ok.map((l) => ({ name: l.name, weight: l.weight, ...(l.hash !== undefined ? { hash: l.hash } : {}) }));
    if (!Array.isArray(raw.loras) || ok.length !== list.length) dropped.push('loras');
  }
  const notes = dropped.length ? [`The Atelier data in this image is damaged; left out: ${dropped.join(', ')}.`] : [];
  return { source: 'atelier', params, notes };
}
