/**
 * History in other tools' formats: one entry as a ComfyUI API workflow, as
 * A1111 text or as plain JSON; a board as a folder of PNGs (metadata inside)
 * with a manifest; and any dropped PNG read back into settings this library
 * can use (its model and LoRAs matched by hash, then by name).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { ImageMetadata } from '../../../shared/contract';
import { AtelierError } from '../../../shared/errors';
import { PngFormatError, readPngText } from '../../lib/pngchunks';
import type { ModelsService } from '../models/models';
import { comfyWorkflow, formatA1111, parseImageText, type ImageParams } from './metadata';
import type { HistoryStore } from './store';

function imageParams(history: HistoryStore, id: string): ImageParams & { request: Record<string, unknown> } {
  const g = history.get(id);
  return {
    prompt: g.prompt,
    negativePrompt: g.negativePrompt,
    sampler: g.sampler,
    steps: g.steps,
    cfg: g.cfg,
    seed: g.seed,
    width: g.width,
    height: g.height,
    modelName: g.modelName,
    modelHash: g.modelHash,
    strength: g.strength,
    mode: g.mode,
    loras: g.loras.map((l) => ({ name: l.name, weight: l.weight, hash: l.hash })),
    backend: g.backend,
    request: history.params(id),
  };
}

export function exportGeneration(history: HistoryStore, models: ModelsService, id: string, format: 'comfyui' | 'json' | 'a1111'): { filename: string; mime: string; text: string } {
  const g = history.get(id);
  const p = imageParams(history, id);
  const stem = `atelier-${g.createdAt.slice(0, 10)}-${g.seed}`;
  if (format === 'a1111') return { filename: `${stem}.txt`, mime: 'text/plain', text: formatA1111(p, { Version: 'Atelier' }) };
  if (format === 'json') {
    const { request, ...params } = p;
    const body = { format: 'atelier.generation', version: 1, id: g.id, createdAt: g.createdAt, params, request, device: g.device, images: g.images.map((im) => ({ index: im.index, seed: im.seed, width: im.width, height: im.height, sha256: im.sha256, path: im.path })) };
    return { filename: `${stem}.json`, mime: 'application/json', text: JSON.stringify(body, null, 2) };
  }
  const fileOf = (modelId: string | null | undefined, fallback: string) => {
    try {
      return modelId ? path.basename(models.get(modelId).path) : fallback;
    } catch {
      return fallback;
    }
  };
  const canvas = (p.request.canvas ?? null) as { init?: string; mask?: string | null } | null;
  const wf = comfyWorkflow({
    ...p,
    checkpointFile: /\.safetensors$/.test(fileOf(g.modelId, '')) ? fileOf(g.modelId, '') : `${g.modelName}.safetensors`,
    loraFiles: g.loras.map((l) => fileOf(l.modelId, `${l.name}.safetensors`)),
    initImage: canvas?.init ? path.basename(canvas.init) : p.mode === 'img2img' ? 'init.png' : null,
    mask: canvas?.mask ? path.basename(canvas.mask) : null,
  });
  return { filename: `${stem}.comfyui-api.json`, mime: 'application/json', text: JSON.stringify(wf, null, 2) };
}

export function exportBoard(history: HistoryStore, id: string, folder: string): { folder: string; images: number } {
  const board = history.getBoard(id);
  const out = path.resolve(folder, board.name.replace(/[\\/:*?"<>|\u0000-\u001f]+/g, '_'));
  try {
    fs.mkdirSync(out, { recursive: true });
  } catch (err) {
    throw new AtelierError('BAD_REQUEST', `folder: cannot create ${out} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}).`);
  }
  const manifest: unknown[] = [];
  let n = 0;
  let offset: number | null = 0;
  while (offset !== null) {
    const page = history.list({ boardId: id, limit: 200, offset });
    for (const g of page.items) {
      for (const im of g.images) {
        const name = `${String(++n).padStart(4, '0')}-${g.seed + im.index}.png`;
        const src = history.resolveFile(im.path);
        if (!src) continue;
        try {
          fs.copyFileSync(src, path.join(out, name));
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          throw new AtelierError(code === 'ENOSPC' ? 'DISK_FULL' : 'BAD_REQUEST', `Exporting to ${out} stopped after ${n - 1} images: ${code === 'ENOSPC' ? 'the disk is full' : (err as Error).message}.`);
        }
        manifest.push({ file: name, generationId: g.id, seed: im.seed, prompt: g.prompt, negativePrompt: g.negativePrompt, model: g.modelName, modelHash: g.modelHash, sampler: g.sampler, steps: g.steps, cfg: g.cfg, width: im.width, height: im.height, loras: g.loras, createdAt: g.createdAt });
      }
    }
    offset = page.nextOffset;
  }
  fs.writeFileSync(path.join(out, 'board.json'), JSON.stringify({ format: 'atelier.board', version: 1, name: board.name, exportedAt: new Date().toISOString(), images: manifest }, null, 2));
  return { folder: out, images: n };
}

export function readImageMetadata(history: HistoryStore, png: Buffer): ImageMetadata {
  let text: Record<string, string>;
  try {
    text = readPngText(png);
  } catch (err) {
    const what = err instanceof PngFormatError ? err.message : (err as Error).message;
    throw new AtelierError('BAD_REQUEST', `That file is ${what === 'not a PNG file' ? 'not a PNG' : `a damaged PNG (${what})`}: generation settings are read from PNGs made by Atelier, A1111 or ComfyUI.`);
  }
  const parsed = parseImageText(text);
  const params = parsed.params;
  const notes = [...parsed.notes];
  let modelId: string | null = null;
  if (params.modelName || params.modelHash) {
    const m = history.findModel('checkpoint', params.modelHash, params.modelName);
    if (m) modelId = m.id;
    else notes.push(`The model "${params.modelName ?? params.modelHash}" is not in your library; the current model is kept.`);
  }
  const loras = (params.loras ?? []).map((l) => {
    const m = history.findModel('lora', l.hash, l.name);
    if (!m) notes.push(`The LoRA "${l.name}" is not in your library.`);
    return { name: l.name, weight: l.weight, modelId: m?.id ?? null };
  });
  return { source: parsed.source, params: params as Record<string, unknown>, modelId, loras, notes };
}
