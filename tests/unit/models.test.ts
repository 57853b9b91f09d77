import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { HistoryStore } from '../../src/main/services/history/store';
import { classifySafetensors, ModelsService } from '../../src/main/services/models/models';
import { readSafetensorsHeader } from '../../src/main/services/models/safetensors';
import { tmpDir, writeSafetensors } from '../helpers';

const stores: HistoryStore[] = [];
afterEach(() => stores.splice(0).forEach((s) => s.close()));

describe('model detection from safetensors headers', () => {
  const dir = tmpDir();
  const file = (name: string, keys: string[]) => {
    const p = path.join(dir, name);
    writeSafetensors(p, keys);
    return p;
  };

  it('tells families and kinds apart by keys, not names', () => {
    expect(classifySafetensors(file('sdxl-named-sd15.safetensors', ['model.diffusion_model.input_blocks.0.0.weight', 'cond_stage_model.transformer.x']))).toEqual({
      kind: 'checkpoint',
      format: 'single_file',
      family: 'sd15',
      nativeSize: 512,
    });
    expect(classifySafetensors(file('a.safetensors', ['model.diffusion_model.x', 'conditioner.embedders.1.model.ln_final.weight']))?.family).toBe('sdxl');
    expect(classifySafetensors(file('b.safetensors', ['lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight']))).toMatchObject({ kind: 'lora', family: 'sd15' });
    expect(classifySafetensors(file('c.safetensors', ['lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_up.weight']))).toMatchObject({ kind: 'lora', family: 'sdxl' });
    expect(classifySafetensors(file('d.safetensors', ['control_model.input_blocks.0.0.weight']))).toMatchObject({ kind: 'controlnet' });
    expect(classifySafetensors(file('e.safetensors', ['some.random.tensor']))).toBeNull();
  });

  it('reads metadata and notices truncation', () => {
    const p = path.join(dir, 'meta.safetensors');
    writeSafetensors(p, ['a', 'b'], { ss_network_dim: '16' });
    expect(readSafetensorsHeader(p).metadata).toEqual({ ss_network_dim: '16' });
    const t = path.join(dir, 'trunc.safetensors');
    writeSafetensors(t, ['a', 'b'], {}, 4);
    expect(() => readSafetensorsHeader(t)).toThrow(/truncated/);
  });
});

describe('ModelsService', () => {
  it('scans folders, skips pickles and junk, and drops models that vanished', () => {
    const root = tmpDir();
    const store = new HistoryStore({ dir: tmpDir() });
    stores.push(store);
    writeSafetensors(path.join(root, 'good.safetensors'), ['model.diffusion_model.x', 'cond_stage_model.y']);
    fs.mkdirSync(path.join(root, 'Stable-diffusion', 'folder-model'), { recursive: true });
    fs.writeFileSync(path.join(root, 'Stable-diffusion', 'folder-model', 'model_index.json'), JSON.stringify({ _class_name: 'StableDiffusionXLPipeline' }));
    fs.writeFileSync(path.join(root, 'evil.ckpt'), Buffer.from([0x80, 0x02, 0x7d, 0x71]));
    fs.writeFileSync(path.join(root, 'notes.safetensors'), 'just some text, not a model');
    const logs: string[] = [];
    const svc = new ModelsService(store, () => [{ dir: root, source: 'folder' }], (l) => logs.push(l));
    const found = svc.rescan();
    expect(found.map((m) => [m.name, m.family, m.format, m.nativeSize]).sort()).toEqual([
      ['folder-model', 'sdxl', 'diffusers', 1024], // no configs in this folder: the family's size
      ['good', 'sd15', 'single_file', 512],
    ]);
    expect(logs.join('\n')).toMatch(/evil\.ckpt: pickle/);
    expect(logs.join('\n')).toMatch(/notes\.safetensors: skipped \(a text file\)/);
    fs.rmSync(path.join(root, 'good.safetensors'));
    expect(svc.rescan().map((m) => m.name)).toEqual(['folder-model']);
  });

  it('refuses to register a pickle, a text file or a missing path with a message that says what it is', () => {
    const root = tmpDir();
    const store = new HistoryStore({ dir: tmpDir() });
    stores.push(store);
    const svc = new ModelsService(store, () => []);
    fs.writeFileSync(path.join(root, 'm.ckpt'), Buffer.concat([Buffer.from([0x80, 0x04]), Buffer.alloc(100)]));
    fs.writeFileSync(path.join(root, 'readme.safetensors'), 'hello world');
    expect(() => svc.register(path.join(root, 'm.ckpt'))).toThrow(/m\.ckpt is a Python pickle.*convert it to safetensors/);
    expect(() => svc.register(path.join(root, 'readme.safetensors'))).toThrow(/a text file/);
    expect(() => svc.register(path.join(root, 'nope.safetensors'))).toThrow(/No model at/);
  });

  it('imports by link (in place, kept across rescans) or by copy (atomically into the library), refusing non-models first', async () => {
    const src = tmpDir();
    const lib = tmpDir();
    const store = new HistoryStore({ dir: tmpDir() });
    stores.push(store);
    const svc = new ModelsService(store, () => [{ dir: lib, source: 'library' }]);
    const file = path.join(src, 'brand.safetensors');
    writeSafetensors(file, ['lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight', 'lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight']);
    const linked = await svc.importModel(file, 'link', path.join(lib, 'imported'));
    expect(linked).toMatchObject({ name: 'brand', kind: 'lora', source: 'linked', path: file });
    expect(fs.existsSync(path.join(lib, 'imported'))).toBe(false);
    svc.rescan();
    expect(svc.list().map((m) => m.source)).toEqual(['linked']);
    const copied = await svc.importModel(file, 'copy', path.join(lib, 'imported'));
    expect(copied).toMatchObject({ kind: 'lora', source: 'library', path: path.join(lib, 'imported', 'brand.safetensors') });
    expect(fs.readFileSync(copied.path).equals(fs.readFileSync(file))).toBe(true);
    const again = await svc.importModel(file, 'copy', path.join(lib, 'imported'));
    expect(path.basename(again.path)).toBe('brand (2).safetensors');
    expect(fs.readdirSync(path.join(lib, 'imported')).filter((f) => f.startsWith('.tmp-'))).toEqual([]);
    svc.rescan();
    expect(svc.list().map((m) => m.source).sort()).toEqual(['library', 'library', 'linked']);
    const pickle = path.join(src, 'old.ckpt');
    fs.writeFileSync(pickle, Buffer.concat([Buffer.from([0x80, 0x02]), Buffer.alloc(64)]));
    await expect(svc.importModel(pickle, 'copy', path.join(lib, 'imported'))).rejects.toThrow(/Python pickle/);
    expect(fs.readdirSync(path.join(lib, 'imported')).sort()).toEqual(['brand (2).safetensors', 'brand.safetensors']);
  });
});
