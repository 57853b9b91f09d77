import { expect, test } from '@playwright/test';
import path from 'node:path';

const SHOTS = path.resolve(__dirname, '..', '..', 'test-results', 'screens');

test('the welcome guide: runtime, what this machine allows, a model, then a first image from the built-in demo model', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(process.env.ATELIER_E2E_URL!);
  await expect(page.getByTestId('status-runtime')).toContainText('Ready on', { timeout: 120000 });
  // This library finished the guide at setup; it opens again from Settings.
  await expect(page.getByRole('dialog', { name: 'Welcome to Atelier' })).toHaveCount(0);
  await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Settings' }).click();
  await page.getByRole('region', { name: 'Models' }).screenshot({ path: path.join(SHOTS, 'settings-models.png') });
  await page.getByRole('region', { name: 'Presets' }).screenshot({ path: path.join(SHOTS, 'settings-presets.png') });
  await page.getByRole('button', { name: 'Open the welcome guide' }).click();
  const guide = page.getByRole('dialog', { name: 'Welcome to Atelier' });
  await expect(guide).toBeVisible();
  await expect(guide.getByTestId('first-run-runtime')).toContainText('Ready on');
  await expect(guide.getByTestId('first-run-device')).toHaveText('CPU (no NVIDIA GPU found)');
  await expect(guide.getByRole('listitem', { name: 'This machine' })).toContainText('The built-in demo model makes an image in about a second here.');
  // The models folder from the setup is already there: its checkpoint is listed.
  await expect(guide.getByTestId('first-run-found')).toContainText('1 checkpoint in the library');
  // A folder that does not exist is said so, and nothing changes.
  await guide.getByRole('textbox', { name: 'Models folder' }).fill('/no/such/folder');
  await guide.getByRole('button', { name: 'Add folder' }).click();
  await expect(page.getByRole('alert').filter({ hasText: '/no/such/folder' })).toBeVisible();
  await guide.screenshot({ path: path.join(SHOTS, 'first-run.png') });

  // "Later" closes it without finishing; it opens again.
  await guide.getByRole('button', { name: 'Later' }).click();
  await expect(guide).toHaveCount(0);
  await page.getByRole('button', { name: 'Open the welcome guide' }).click();
  await guide.getByRole('button', { name: 'Make a first image' }).click();
  await expect(guide).toHaveCount(0);
  await expect(page.getByTestId('result-image')).toHaveCount(1, { timeout: 120000 });
  await expect(page.locator('select[name="model"] option:checked')).toHaveText('atelier-shapes · SD 1.5');
  await expect(page.locator('textarea[name="prompt"]')).toHaveValue('a red circle on a blue background');
  await page.screenshot({ path: path.join(SHOTS, 'first-run-image.png') });
  // The image is the demo model's: a red shape on a blue ground (the centre differs from the border).
  const px = await page.getByTestId('result-image').evaluate(async (img: HTMLImageElement) => {
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const ctx = c.getContext('2d')!;
    ctx.drawImage(img, 0, 0);
    const at = (x: number, y: number) => Array.from(ctx.getImageData(x, y, 1, 1).data.slice(0, 3));
    return { size: [c.width, c.height], corner: at(1, 1) };
  });
  expect(px.size).toEqual([64, 64]);
  expect(px.corner[2]).toBeGreaterThan(px.corner[0]); // a blue background
  expect(errors).toEqual([]);
});
