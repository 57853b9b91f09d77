import { expect, test, type Page } from '@playwright/test';
import path from 'node:path';
import { solidPng } from '../../src/main/lib/png';

const SHOTS = path.resolve(__dirname, '..', '..', 'test-results', 'screens');

async function openCanvas(page: Page) {
  await page.goto(process.env.ATELIER_E2E_URL!);
  await expect(page.getByTestId('status-runtime')).toContainText('Ready on', { timeout: 120000 });
  await page.getByRole('button', { name: 'Canvas' }).click();
  await expect(page.getByTestId('canvas-stage')).toBeVisible();
}

async function importPng(page: Page, width: number, height: number, rgb: [number, number, number]) {
  await page.getByTestId('canvas-file-input').setInputFiles({ name: `import-${width}.png`, mimeType: 'image/png', buffer: solidPng(width, height, rgb) });
}

async function paint(page: Page, from: [number, number], to: [number, number], steps = 12) {
  const box = (await page.getByTestId('canvas-stage').boundingBox())!;
  await page.mouse.move(box.x + from[0], box.y + from[1]);
  await page.mouse.down();
  for (let i = 1; i <= steps; i++) await page.mouse.move(box.x + from[0] + ((to[0] - from[0]) * i) / steps, box.y + from[1] + ((to[1] - from[1]) * i) / steps);
  await page.mouse.up();
}

test('paint a mask, inpaint in the frame, see the result staged, accept it, and find it in the gallery', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await openCanvas(page);
  await importPng(page, 64, 64, [40, 80, 220]);
  await expect(page.getByText('Frame 64×64 at 0, 0', { exact: false })).toBeVisible();
  await page.getByRole('button', { name: 'Fit' }).click();
  // The built-in demo model, shipped in resources/models.
  await page.locator('select[name="model"]').selectOption({ label: 'atelier-shapes · SD 1.5' });
  await page.locator('textarea[name="prompt"]').fill('a yellow circle on a blue background');
  await page.locator('input[name="steps"]').fill('6');
  await page.keyboard.press('b');
  const box = (await page.getByTestId('canvas-stage').boundingBox())!;
  const cx = box.width / 2;
  const cy = box.height / 2;
  await paint(page, [cx - 60, cy], [cx + 60, cy]);
  await page.screenshot({ path: path.join(SHOTS, 'canvas-mask.png') });
  await page.getByRole('button', { name: 'Generate in frame' }).click();
  const staged = page.getByTestId('staged-image');
  await expect(staged).toBeVisible({ timeout: 120000 });
  await page.screenshot({ path: path.join(SHOTS, 'canvas-staged.png') });
  await page.getByRole('button', { name: 'Accept' }).click();
  await expect(page.getByRole('region', { name: 'Staging' })).toHaveCount(0);

  await page.keyboard.press('Control+3');
  await page.getByRole('searchbox').fill('yellow circle');
  await expect(page.getByTestId('gallery-count')).toHaveText('1 generation');
  await page.getByRole('listitem').first().click();
  const detail = page.getByRole('complementary', { name: 'Image details' });
  await expect(detail).toContainText('inpaint');
  await expect(detail).toContainText('frame 64×64 at 0,0');
  await expect(detail).toContainText('atelier-shapes');
  await expect(detail.getByRole('link', { name: 'mask' })).toBeVisible();

  const firstMask = (await detail.getByRole('link', { name: 'mask' }).getAttribute('href'))!;

  // "Open in canvas" brings the frame, the composite, the mask and the settings back…
  await detail.getByRole('button', { name: 'Open in canvas' }).click();
  await expect(page.getByTestId('canvas-stage')).toBeVisible();
  await expect(page.getByText('Frame 64×64 at 0, 0', { exact: false })).toBeVisible();
  await expect(page.locator('textarea[name="prompt"]')).toHaveValue('a yellow circle on a blue background');
  await expect(page.getByRole('status').filter({ hasText: 'Restored into the canvas' })).toContainText('mask');
  await expect(page.getByTestId('mask-restored')).toBeVisible();
  await page.screenshot({ path: path.join(SHOTS, 'canvas-reopened.png') });

  // …so generating again (another seed, so not the cached result) sends the same mask, pixel for pixel.
  await page.locator('input[name="seed"]').fill('4242');
  await page.locator('input[name="seed"]').press('Tab');
  await page.getByRole('button', { name: 'Generate in frame' }).click();
  await expect(page.getByTestId('staged-image')).toBeVisible({ timeout: 120000 });
  await page.getByRole('button', { name: 'Accept' }).click();
  await page.keyboard.press('Control+3');
  await expect(page.getByTestId('gallery-count')).toHaveText('2 generations');
  await page.getByRole('listitem').first().click();
  await expect(detail).toContainText('4242');
  const secondMask = (await detail.getByRole('link', { name: 'mask' }).getAttribute('href'))!;
  // Assets are content-addressed (sha256 of the bytes): the same path is the same PNG.
  expect(secondMask).toBe(firstMask);
  const cmp = await page.evaluate(async ([a, b]) => {
    const pixels = async (url: string) => {
      const img = new Image();
      img.src = url;
      await img.decode();
      const c = document.createElement('canvas');
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
      const ctx = c.getContext('2d')!;
      ctx.drawImage(img, 0, 0);
      return { w: c.width, h: c.height, data: ctx.getImageData(0, 0, c.width, c.height).data };
    };
    const [p, q] = [await pixels(a), await pixels(b)];
    let maxDiff = 0;
    let white = 0;
    for (let i = 0; i < p.data.length; i += 4) {
      maxDiff = Math.max(maxDiff, Math.abs(p.data[i] - q.data[i]));
      if (p.data[i] > 127) white++;
    }
    return { size: [p.w, p.h, q.w, q.h], maxDiff, white };
  }, [firstMask, secondMask]);
  expect(cmp.size).toEqual([64, 64, 64, 64]);
  expect(cmp.white).toBeGreaterThan(100);
  expect(cmp.maxDiff).toBeLessThanOrEqual(2);
  expect(errors).toEqual([]);
});

test('painting stays smooth on a 2048×2048 document (frames per second measured, not asserted)', async ({ page }) => {
  await openCanvas(page);
  await importPng(page, 2048, 2048, [120, 120, 120]);
  await expect(page.getByText('Frame 2048×2048 at 0, 0', { exact: false })).toBeVisible({ timeout: 30000 });
  await page.getByRole('button', { name: 'Fit' }).click();
  await page.keyboard.press('b');
  await page.evaluate(() => {
    const w = window as unknown as { frames: number; counting: boolean };
    w.frames = 0;
    w.counting = true;
    const tick = () => {
      if (!w.counting) return;
      w.frames++;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  const started = Date.now();
  const box = (await page.getByTestId('canvas-stage').boundingBox())!;
  // A long scribble: 400 pointer moves.
  await page.mouse.move(box.x + 100, box.y + 100);
  await page.mouse.down();
  for (let i = 0; i < 400; i++) await page.mouse.move(box.x + 100 + (i % 40) * 12, box.y + 100 + Math.floor(i / 40) * 30);
  await page.mouse.up();
  const seconds = (Date.now() - started) / 1000;
  const frames = await page.evaluate(() => {
    const w = window as unknown as { frames: number; counting: boolean };
    w.counting = false;
    return w.frames;
  });
  console.log(`canvas painting on 2048x2048: ${frames} frames in ${seconds.toFixed(2)} s = ${(frames / seconds).toFixed(1)} fps (400 pointer moves)`);
  await page.screenshot({ path: path.join(SHOTS, 'canvas-2048.png') });
  expect(frames).toBeGreaterThan(0);
});
