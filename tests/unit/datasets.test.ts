import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { imageInfo, vetTrainingImage } from '../../src/main/lib/imageinfo';
import { parseLoraArg } from '../../src/main/lib/loraArg';
import { DatasetsService } from '../../src/main/services/training/datasets';
import { makePng, tmpDir } from '../helpers';

/** A minimal baseline JPEG header + EOI: enough for the sniffer (SOI, SOF0 with the size, SOS, EOI). */
function fakeJpeg(width: number, height: number, complete = true): Buffer {
  const sof = Buffer.from([0xff, 0xc0, 0x00, 0x11, 0x08, height >> 8, height & 255, width >> 8, width & 255, 0x03, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
  const sos = Buffer.from([0xff, 0xda, 0x00, 0x0c, 0x03, 1, 0, 2, 0x11, 3, 0x11, 0, 0x3f, 0]);
  const data = Buffer.alloc(200, 0x55);
  const parts = [Buffer.from([0xff, 0xd8]), sof, sos, data];
  if (complete) parts.push(Buffer.from([0xff, 0xd9]));
  return Buffer.concat(parts);
}

describe('image sniffing', () => {
  it('reads sizes of PNG, JPEG, WebP and BMP from their bytes', () => {
    expect(imageInfo(makePng(64, 48))).toEqual({ ok: true, format: 'png', width: 64, height: 48 });
    expect(imageInfo(fakeJpeg(640, 480))).toEqual({ ok: true, format: 'jpeg', width: 640, height: 480 });
    const vp8l = Buffer.alloc(30);
    vp8l.write('RIFF', 0, 'latin1');
    vp8l.writeUInt32LE(22, 4);
    vp8l.write('WEBPVP8L', 8, 'latin1');
    vp8l.writeUInt32LE(((100 - 1) | ((50 - 1) << 14)) >>> 0, 21);
    expect(imageInfo(vp8l)).toEqual({ ok: true, format: 'webp', width: 100, height: 50 });
  });

  it('says what a bad file is instead of throwing', () => {
    const png = makePng(64, 64);
    expect(imageInfo(png.subarray(0, png.length - 20))).toMatchObject({ ok: false, reason: expect.stringMatching(/truncated PNG/) });
    expect(imageInfo(fakeJpeg(64, 64, false))).toMatchObject({ ok: false, reason: expect.stringMatching(/truncated JPEG/) });
    expect(imageInfo(Buffer.from('<!DOCTYPE html><html>'))).toMatchObject({ ok: false, reason: expect.stringMatching(/HTML page/) });
    expect(imageInfo(Buffer.from('just some notes\n'))).toMatchObject({ ok: false, reason: expect.stringMatching(/text file/) });
    expect(imageInfo(Buffer.alloc(0))).toMatchObject({ ok: false, reason: 'an empty file' });
    expect(imageInfo(Buffer.from([0x80, 0x04, 0x95, 1, 2, 3]))).toMatchObject({ ok: false, reason: expect.stringMatching(/pickle/) });
    expect(vetTrainingImage(makePng(20, 200), 32)).toMatchObject({ ok: false, reason: expect.stringMatching(/20×200: too small/) });
    // A header that declares 30000×30000 is refused before anything decodes it.
    const ihdr = makePng(8, 8);
    ihdr.writeUInt32BE(30000, 16);
    ihdr.writeUInt32BE(30000, 20);
    expect(vetTrainingImage(ihdr, 32)).toMatchObject({ ok: false, reason: expect.stringMatching(/too large/) });
  });

  it('fuzz: random and mangled bytes always get an answer, never an exception', () => {
    const png = makePng(64, 64);
    let seed = 7;
    const rnd = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) / 0x7fffffff);
    for (let i = 0; i < 500; i++) {
      const b = Buffer.from(png);
      for (let k = 0; k < 1 + Math.floor(rnd() * 8); k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
      const cut = b.subarray(0, Math.floor(rnd() * b.length));
      expect(() => imageInfo(cut)).not.toThrow();
      expect(() => imageInfo(zlib.deflateSync(cut))).not.toThrow();
    }
  });
});

describe('datasets (kohya layout: image + <stem>.txt)', () => {
  function setup() {
    const lib = tmpDir();
    const changed: string[] = [];
    return { lib, ds: new DatasetsService(path.join(lib, 'datasets'), lib, (id) => changed.push(id)), changed };
  }

  it('imports a folder with captions, skips bad files with reasons, and keeps names unique', () => {
    const { lib, ds } = setup();
    const src = tmpDir();
    fs.writeFileSync(path.join(src, 'cat 1.png'), makePng(64, 64));
    fs.writeFileSync(path.join(src, 'cat 1.txt'), 'a cat\non a mat\u0007');
    fs.writeFileSync(path.join(src, 'dog.jpg'), fakeJpeg(96, 64));
    fs.writeFileSync(path.join(src, 'broken.png'), Buffer.from('not really a png'));
    fs.writeFileSync(path.join(src, 'tiny.png'), makePng(8, 8));
    fs.writeFileSync(path.join(src, 'cut.png'), makePng(64, 64).subarray(0, 40));
    fs.writeFileSync(path.join(src, 'readme.md'), '# hi');
    const d = ds.create('Brand', 'atlr');
    const r = ds.importFolder(d.id, src);
    expect(r.added.sort()).toEqual(['cat_1.png', 'dog.jpg']);
    expect(r.skipped.map((s) => s.file).sort()).toEqual(['broken.png', 'cut.png', 'readme.md', 'tiny.png']);
    expect(r.skipped.find((s) => s.file === 'tiny.png')!.reason).toMatch(/too small/);
    expect(r.skipped.find((s) => s.file === 'cut.png')!.reason).toMatch(/truncated/);
    const cat = r.dataset.images.find((i) => i.file === 'cat_1.png')!;
    expect(cat).toMatchObject({ caption: 'a cat on a mat', width: 64, height: 64, format: 'png', path: `datasets/${d.id}/cat_1.png` });
    expect(fs.readFileSync(path.join(lib, 'datasets', d.id, 'cat_1.txt'), 'utf8')).toBe('a cat on a mat');
    // Importing the same folder again does not overwrite: new unique stems.
    const again = ds.importFolder(d.id, src);
    expect(again.added.sort()).toEqual(['cat_1-2.png', 'dog-2.jpg']);
    expect(ds.get(d.id).images).toHaveLength(4);
  });

  it('edits captions in sidecar files, removes images, and reads hand edits', () => {
    const { lib, ds } = setup();
    const d = ds.create('Style');
    const r = ds.addFiles(d.id, [
      { name: 'a.png', data: makePng(64, 64).toString('base64') },
      { name: 'a.txt', data: Buffer.from('first').toString('base64') },
      { name: 'b.png', data: makePng(40, 80).toString('base64') },
    ]);
    expect(r.dataset.images.map((i) => [i.file, i.caption])).toEqual([
      ['a.png', 'first'],
      ['b.png', ''],
    ]);
    expect(ds.setCaption(d.id, 'b.png', 'second one').caption).toBe('second one');
    fs.writeFileSync(path.join(lib, 'datasets', d.id, 'a.txt'), 'edited by hand');
    expect(ds.get(d.id).images[0].caption).toBe('edited by hand');
    expect(ds.removeImage(d.id, 'a.png').images.map((i) => i.file)).toEqual(['b.png']);
    expect(fs.existsSync(path.join(lib, 'datasets', d.id, 'a.txt'))).toBe(false);
    expect(() => ds.removeImage(d.id, '../b.png')).toThrow(/No image/);
    expect(() => ds.setCaption(d.id, 'zzz.png', 'x')).toThrow(/No image zzz.png/);
    expect(ds.list()).toMatchObject([{ name: 'Style', imageCount: 1, cover: `datasets/${d.id}/b.png` }]);
    expect(ds.delete(d.id)).toBe(true);
    expect(() => ds.get(d.id)).toThrow(/No dataset/);
  });

  it('refuses what is not a dataset folder or has no images, clearly', () => {
    const { ds } = setup();
    const d = ds.create('Empty');
    expect(() => ds.importFolder(d.id, '/nonexistent/folder')).toThrow(/Cannot open the folder/);
    const empty = tmpDir();
    fs.writeFileSync(path.join(empty, 'notes.txt'), 'x');
    expect(() => ds.importFolder(d.id, empty)).toThrow(/no image files/);
    expect(() => ds.addFiles(d.id, [{ name: 'x.txt', data: 'eA==' }])).toThrow(/No image among the dropped files/);
    expect(() => ds.get('../../etc')).toThrow(/No dataset/);
  });
});

describe('--lora PATH[:WEIGHT]', () => {
  it('splits a numeric weight off the end only', () => {
    expect(parseLoraArg('/x/brand.safetensors:0.7')).toEqual({ path: '/x/brand.safetensors', weight: 0.7 });
    expect(parseLoraArg('/x/brand.safetensors')).toEqual({ path: '/x/brand.safetensors', weight: 1 });
    expect(parseLoraArg('C:\\loras\\brand.safetensors:-1')).toEqual({ path: 'C:\\loras\\brand.safetensors', weight: -1 });
    expect(parseLoraArg('C:\\loras\\brand.safetensors')).toEqual({ path: 'C:\\loras\\brand.safetensors', weight: 1 });
  });
});
