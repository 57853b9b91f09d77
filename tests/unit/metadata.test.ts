import { describe, expect, it } from 'vitest';
import zlib from 'node:zlib';
import { readPngText, writePngText, PngFormatError } from '../../src/main/lib/pngchunks';
import { comfyWorkflow, formatA1111, parseA1111, parseComfy, parseImageText, type ImageParams } from '../../src/main/services/history/metadata';
import { imageInfo } from '../../src/main/lib/imageinfo';
import { makePng } from '../helpers';

const P: ImageParams = {
  prompt: 'a red circle, oil painting',
  negativePrompt: 'blurry, lowres',
  sampler: 'DPM++ 2M Karras',
  steps: 28,
  cfg: 6.5,
  seed: 1234567,
  width: 512,
  height: 768,
  modelName: 'dreamshaper_8',
  modelHash: '879db523c3',
  strength: null,
  mode: 'txt2img',
  loras: [{ name: 'brand', weight: 0.8, hash: 'a1b2c3d4e5f6' }],
};

describe('PNG text chunks', () => {
  it('inserts before IDAT, replaces same keys, keeps the pixels, and reads back tEXt and iTXt', () => {
    const png = makePng(16, 16, [1, 2, 3]);
    const out = writePngText(png, { parameters: 'hello', atelier: '{"x":"ünïcode ✓"}' });
    expect(imageInfo(out)).toMatchObject({ ok: true, width: 16, height: 16 });
    expect(readPngText(out)).toEqual({ parameters: 'hello', atelier: '{"x":"ünïcode ✓"}' });
    const again = writePngText(out, { parameters: 'second' });
    expect(readPngText(again)).toEqual({ parameters: 'second', atelier: '{"x":"ünïcode ✓"}' });
    // The IDAT bytes are untouched.
    const idat = (b: Buffer) => b.subarray(b.indexOf('IDAT') - 4);
    expect(idat(again).equals(idat(png))).toBe(true);
    expect(() => readPngText(Buffer.from('nope'))).toThrow(PngFormatError);
    expect(() => writePngText(png.subarray(0, 30), { a: 'b' })).toThrow(/truncated|without image data/);
  });

  it('a zTXt zip bomb is cut off, not inflated into memory', () => {
    const png = makePng(8, 8);
    const bomb = zlib.deflateSync(Buffer.alloc(64 * 1024 * 1024, 0x41));
    const data = Buffer.concat([Buffer.from('parameters\0\0', 'latin1'), bomb]);
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const chunk = Buffer.concat([len, Buffer.from('zTXt'), data, Buffer.alloc(4)]);
    const at = png.indexOf('IDAT') - 4;
    const evil = Buffer.concat([png.subarray(0, at), chunk, png.subarray(at)]);
    expect(readPngText(evil)).toEqual({});
  });
});

describe('A1111 parameters', () => {
  it('round-trips every field, LoRAs as prompt tags with hashes', () => {
    const text = formatA1111(P, { Version: 'Atelier' });
    expect(text).toBe(
      'a red circle, oil painting <lora:brand:0.8>\nNegative prompt: blurry, lowres\n' +
        'Steps: 28, Sampler: DPM++ 2M Karras, CFG scale: 6.5, Seed: 1234567, Size: 512x768, Model hash: 879db523c3, Model: dreamshaper_8, Lora hashes: "brand: a1b2c3d4e5f6", Version: Atelier',
    );
    const back = parseA1111(text);
    expect(back.notes).toEqual([]);
    const { strength: _s, mode: _m, ...rest } = P;
    expect(back.params).toMatchObject(rest);
    expect(back.params.strength).toBeUndefined();
  });

  it('reads what A1111 itself writes (new-style schedule type, multi-line prompts, extras it cannot use)', () => {
    const a1111 =
      'masterpiece, 1girl,\nstanding in rain <lora:rainV2:0.65>\nNegative prompt: bad hands\n' +
      'Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 42, Size: 832x1216, Model hash: 6ce0161689, Model: sdXL_v10, Denoising strength: 0.4, Hires upscale: 1.5, Hires upscaler: Latent, Version: v1.10.1';
    const r = parseA1111(a1111);
    expect(r.params).toMatchObject({ prompt: 'masterpiece, 1girl,\nstanding in rain', negativePrompt: 'bad hands', sampler: 'DPM++ 2M Karras', steps: 30, cfg: 7, seed: 42, width: 832, height: 1216, strength: 0.4, modelHash: '6ce0161689', loras: [{ name: 'rainV2', weight: 0.65 }] });
    expect(r.notes.join(' ')).toMatch(/Hires upscale, Hires upscaler/);
    expect(parseA1111('just a prompt').notes[0]).toMatch(/only a prompt/);
    expect(parseA1111('p\nSteps: 20, Sampler: Restart').notes[0]).toMatch(/"Restart" is not one Atelier has/);
  });
});

describe('ComfyUI workflows', () => {
  it('exports an API-format graph with stock nodes that parses back to the same settings', () => {
    const g = comfyWorkflow({ ...P, checkpointFile: 'dreamshaper_8.safetensors' });
    const types = Object.values(g).map((n) => n.class_type);
    expect(types).toEqual(['CheckpointLoaderSimple', 'LoraLoader', 'CLIPTextEncode', 'CLIPTextEncode', 'EmptyLatentImage', 'KSampler', 'VAEDecode', 'SaveImage']);
    const ks = Object.values(g).find((n) => n.class_type === 'KSampler')!;
    expect(ks.inputs).toMatchObject({ seed: 1234567, steps: 28, cfg: 6.5, sampler_name: 'dpmpp_2m', scheduler: 'karras', denoise: 1 });
    // every link points at a node that exists
    for (const n of Object.values(g)) for (const v of Object.values(n.inputs)) if (Array.isArray(v)) expect(g[String(v[0])], JSON.stringify(v)).toBeDefined();
    const back = parseComfy(JSON.stringify(g));
    expect(back.notes).toEqual([]);
    expect(back.params).toMatchObject({ prompt: P.prompt, negativePrompt: P.negativePrompt, seed: P.seed, steps: 28, cfg: 6.5, sampler: 'DPM++ 2M Karras', width: 512, height: 768, modelName: 'dreamshaper_8', loras: [{ name: 'brand', weight: 0.8 }] });
  });

  it('img2img and inpaint graphs start from the image; damaged or custom graphs say what they lack', () => {
    const g = comfyWorkflow({ ...P, mode: 'inpaint', strength: 0.6, loras: [], checkpointFile: 'm.safetensors', initImage: 'init.png', mask: 'mask.png' });
    expect(Object.values(g).map((n) => n.class_type)).toContain('SetLatentNoiseMask');
    expect(Object.values(g).find((n) => n.class_type === 'KSampler')!.inputs.denoise).toBe(0.6);
    expect(parseComfy('{nope').notes[0]).toMatch(/damaged/);
    const custom = JSON.parse(JSON.stringify(comfyWorkflow({ ...P, loras: [], checkpointFile: 'm.safetensors' })));
    custom['99'] = { class_type: 'UltimateSDUpscale', inputs: {} };
    expect(parseComfy(JSON.stringify(custom)).notes.join(' ')).toMatch(/UltimateSDUpscale/);
  });

  it('parseImageText prefers Atelier JSON, then A1111, then ComfyUI', () => {
    expect(parseImageText({ atelier: JSON.stringify({ version: 1, params: P }), parameters: 'x' }).source).toBe('atelier');
    expect(parseImageText({ parameters: formatA1111(P) }).source).toBe('a1111');
    expect(parseImageText({ prompt: JSON.stringify(comfyWorkflow({ ...P, checkpointFile: 'x' })) }).source).toBe('comfyui');
    expect(parseImageText({}).notes[0]).toMatch(/no generation settings/);
  });
});
