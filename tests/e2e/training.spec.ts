/**
 * LoRA training from the UI: a dataset made by picking files (a corrupt one
 * and a stray caption among them are listed as skipped), captions that
 * persist, a short training on the built-in demo model with live progress,
 * loss curve, samples, pause and resume, then the LoRA used on the Generate
 * page and found in the gallery.
 */
import { expect, test, type Page } from '@playwright/test';
import path from 'node:path';
import zlib from 'node:zlib';

const SHOTS = path.resolve(__dirname, '..', '..', 'test-results', 'screens');
const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`) });

test.describe.configure({ mode: 'serial' });

// ------------------------------------------------------------- test images

const CRC = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});
function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}
/** An RGB PNG from a pixel function. */
function png(w: number, h: number, pixel: (x: number, y: number) => [number, number, number]): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  const raw = Buffer.alloc(h * (1 + w * 3));
  for (let y = 0; y < h; y++) {
    raw[y * (1 + w * 3)] = 0;
    for (let x = 0; x < w; x++) raw.set(pixel(x, y), y * (1 + w * 3) + 1 + x * 3);
  }
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

const BACKGROUNDS: [number, number, number][] = [
  [40, 70, 160],
  [30, 120, 90],
  [230, 230, 220],
  [20, 20, 30],
  [200, 170, 60],
  [90, 40, 120],
  [60, 150, 200],
  [120, 120, 120],
];

/** A pink heart (the implicit curve (x²+y²-1)³ = x²y³) on a plain background; size and place vary. */
function heart(i: number): Buffer {
  const bg = BACKGROUNDS[i % BACKGROUNDS.length];
  const cx = 32 + ((i * 7) % 11) - 5;
  const cy = 30 + ((i * 5) % 9) - 4;
  const r = 17 + (i % 4) * 2;
  return png(64, 64, (px, py) => {
    const x = (px - cx) / r;
    const y = -(py - cy) / r;
    const v = (x * x + y * y - 1) ** 3 - x * x * y ** 3;
    return v <= 0 ? [245, 105, 170] : bg;
  });
}

const TRIGGER = 'pnkhrt';
const CAPTIONS = ['a heart on a blue background', 'a heart on a green background', 'a heart on a white background'];

function datasetFiles() {
  const files = Array.from({ length: 8 }, (_, i) => ({ name: `heart-${i + 1}.png`, mimeType: 'image/png', buffer: heart(i) }));
  // kohya-style captions for the first three, a corrupt image, and a caption whose image is missing.
  CAPTIONS.forEach((c, i) => files.push({ name: `heart-${i + 1}.txt`, mimeType: 'text/plain', buffer: Buffer.from(c) }));
  const junk = Buffer.alloc(600);
  for (let i = 0; i < junk.length; i++) junk[i] = (i * 151 + 7) % 256;
  files.push({ name: 'broken.png', mimeType: 'image/png', buffer: junk });
  files.push({ name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('a caption with no image') });
  return files;
}

async function open(page: Page) {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(process.env.ATELIER_E2E_URL!);
  await expect(page.getByTestId('status-runtime')).toContainText('Ready on', { timeout: 120000 });
  return errors;
}

const nav = (page: Page, label: string) => page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: label, exact: true });

async function openTrain(page: Page) {
  await page.keyboard.press('Control+5');
  await expect(nav(page, 'Train')).toHaveAttribute('aria-current', 'page');
}

const caption = (page: Page, file: string) => page.getByRole('textbox', { name: `Caption of ${file}` });

// ------------------------------------------------------------------- tests

test('a dataset from picked files: bad files listed with their reasons, captions saved and kept', async ({ page }) => {
  const errors = await open(page);
  await openTrain(page);
  await expect(page.getByRole('heading', { name: 'Train a LoRA on your own images' })).toBeVisible();
  await shot(page, 'training-empty');

  // Escape closes the dialog without creating anything.
  await page.getByRole('button', { name: 'New dataset' }).first().click();
  await expect(page.getByRole('dialog', { name: 'New dataset' })).toBeVisible();
  await page.keyboard.press('Escape');
  await expect(page.getByRole('dialog')).toHaveCount(0);

  await page.getByRole('button', { name: 'New dataset' }).first().click();
  const dialog = page.getByRole('dialog', { name: 'New dataset' });
  await dialog.getByLabel('Name', { exact: true }).fill('Pink hearts');
  await dialog.getByLabel(/Trigger word/).fill(TRIGGER);
  await dialog.getByRole('button', { name: 'Create' }).click();
  await expect(dialog).toHaveCount(0);
  await expect(page.getByRole('navigation', { name: 'Datasets and trainings' })).toContainText('Pink hearts');
  await expect(page.getByTestId('dataset-count')).toContainText('0 images · 20-50 recommended');

  await page.getByTestId('dataset-file-input').setInputFiles(datasetFiles());
  const report = page.getByRole('region', { name: 'Import result' });
  await expect(report).toContainText('Added 8 images');
  const skipped = page.getByTestId('skipped-files');
  await expect(skipped.locator('li')).toHaveCount(2);
  await expect(skipped.locator('li', { hasText: 'broken.png' })).toContainText(/\S+/);
  expect((await skipped.locator('li', { hasText: 'broken.png' }).locator('.skipped-reason').textContent())?.trim().length).toBeGreaterThan(5);
  await expect(skipped.locator('li', { hasText: 'notes.txt' })).toContainText('no image named "notes"');
  await expect(page.getByRole('alert').filter({ hasText: 'broken.png' })).toBeVisible();
  await expect(page.getByTestId('dataset-count')).toContainText('8 images · 20-50 recommended');
  await shot(page, 'training-dataset-skipped');
  await expect(page.getByTestId('dataset-image')).toHaveCount(8);
  // The kohya captions came with their images.
  await expect(caption(page, 'heart-1.png')).toHaveValue(CAPTIONS[0]);
  await expect(caption(page, 'heart-4.png')).toHaveValue('');
  // Every thumbnail loads from the library.
  await expect
    .poll(() => page.locator('[data-testid="dataset-image"] img').evaluateAll((imgs) => (imgs as HTMLImageElement[]).filter((i) => i.complete && i.naturalWidth === 64).length))
    .toBe(8);

  // Ctrl+Enter saves (and does not start a generation); leaving the field saves too.
  await caption(page, 'heart-4.png').fill(`${TRIGGER}, a heart on a black background`);
  await caption(page, 'heart-4.png').press('Control+Enter');
  await expect(page.locator('[data-file="heart-4.png"] [data-testid="caption-state"]')).toHaveText('Saved');
  await caption(page, 'heart-5.png').fill('a heart on a yellow background');
  await caption(page, 'heart-6.png').click();
  await expect(page.locator('[data-file="heart-5.png"] [data-testid="caption-state"]')).toHaveText('Saved');
  await expect(nav(page, 'Train')).toHaveAttribute('aria-current', 'page');
  await page.locator('.ds-view').evaluate((el) => el.scrollTo(0, 0));
  await shot(page, 'training-dataset');

  // Removing an image takes it (and its caption) out.
  await page.getByRole('button', { name: 'Remove heart-8.png' }).click();
  await expect(page.getByTestId('dataset-image')).toHaveCount(7);
  await expect(page.getByTestId('dataset-count')).toContainText('7 images');

  // Everything is on disk: a reload shows the same captions.
  await page.reload();
  await expect(page.getByTestId('status-runtime')).toContainText('Ready on', { timeout: 120000 });
  await openTrain(page);
  await expect(page.getByTestId('dataset-count')).toContainText('7 images');
  await expect(caption(page, 'heart-4.png')).toHaveValue(`${TRIGGER}, a heart on a black background`);
  await expect(caption(page, 'heart-5.png')).toHaveValue('a heart on a yellow background');
  await expect(caption(page, 'heart-1.png')).toHaveValue(CAPTIONS[0]);
  await expect(page.getByRole('navigation', { name: 'Datasets and trainings' })).toContainText('7 images');

  // Rename, then delete a second dataset (Escape keeps it; the confirm button deletes it).
  const side = page.getByRole('navigation', { name: 'Datasets and trainings' });
  await page.getByRole('button', { name: 'New dataset' }).first().click();
  await page.getByRole('dialog', { name: 'New dataset' }).getByLabel('Name', { exact: true }).fill('Scratch');
  await page.keyboard.press('Enter');
  await expect(page.getByTestId('dataset-count')).toContainText('0 images');
  await page.locator('input[name="datasetName"]').fill('Scratch two');
  await page.locator('input[name="datasetName"]').press('Enter');
  await expect(side).toContainText('Scratch two');
  await page.getByRole('button', { name: 'Delete dataset' }).click();
  await expect(page.getByRole('dialog', { name: /Delete the dataset “Scratch two”/ })).toBeVisible();
  await page.keyboard.press('Escape');
  await expect(page.getByRole('dialog')).toHaveCount(0);
  await expect(side).toContainText('Scratch two');
  await page.getByRole('button', { name: 'Delete dataset' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete dataset' }).click();
  await expect(side).not.toContainText('Scratch two');
  await expect(page.getByTestId('dataset-count')).toContainText('7 images');

  // A folder that does not exist is reported, not silently ignored.
  await page.getByLabel('Folder to import').fill('/no/such/folder');
  await page.getByRole('button', { name: 'Import folder' }).click();
  await expect(page.getByRole('region', { name: 'Import result' }).getByRole('alert')).toContainText('/no/such/folder');
  expect(errors).toEqual([]);
});

test('trains a LoRA with live progress, pause and resume, then generates with it', async ({ page }) => {
  test.setTimeout(540000);
  const errors = await open(page);
  await openTrain(page);
  await expect(page.getByTestId('dataset-count')).toContainText('7 images');

  // The built-in demo model (64 px) trains in seconds on a CPU; its preset says which tier it picked.
  const base = page.locator('select[name="baseModel"]');
  const demo = await base.locator('option', { hasText: 'atelier-shapes' }).first().getAttribute('value');
  expect(demo).toBeTruthy();
  await base.selectOption(demo!);
  await expect(page.getByTestId('preset-note')).toContainText(/(CPU|GB) — /);
  await expect(page.locator('input[name="resolution"]')).toHaveValue('64');
  await page.locator('input[name="steps"]').fill('40');
  await page.locator('input[name="sampleEvery"]').fill('10');
  await page.locator('input[name="checkpointEvery"]').fill('10');
  await page.locator('textarea[name="samplePrompts"]').fill(`${TRIGGER}, a heart on a white background`);
  await page.locator('input[name="loraName"]').fill('pink-hearts-e2e');

  // A bad field is named before anything is queued.
  await page.locator('input[name="rank"]').fill('0');
  await page.getByRole('button', { name: 'Start training' }).click();
  await expect(page.locator('label', { has: page.locator('input[name="rank"]') }).getByRole('alert')).toBeVisible();
  await page.locator('input[name="rank"]').fill('4');
  await page.locator('input[name="alpha"]').fill('4');

  await page.getByRole('button', { name: 'Start training' }).click();
  const view = page.getByRole('region', { name: 'Training pink-hearts-e2e' });
  await expect(view).toBeVisible();
  const stepText = view.getByTestId('training-step');
  /** The step shown; a failed training ends the wait with the worker's message instead of a timeout. */
  const stepOf = async () => {
    if ((await view.getByTestId('training-state').textContent()) === 'Failed') throw new Error(`The training failed: ${await view.getByTestId('training-message').textContent()}`);
    return Number(/Step (\d+) \//.exec((await stepText.textContent()) ?? '')?.[1] ?? -1);
  };

  // Live progress: the counter moves and the loss curve is drawn.
  await expect.poll(stepOf, { timeout: 180000 }).toBeGreaterThan(0);
  await expect(view.getByTestId('training-state')).toHaveText('Running');
  await expect(stepText).toContainText('/ 40');

  // Pause: the worker writes a checkpoint and stops; the counter rolls back to it.
  await view.getByRole('button', { name: 'Pause' }).click();
  await expect(view.getByTestId('training-state')).toHaveText('Paused', { timeout: 120000 });
  await expect(view.getByRole('button', { name: 'Resume' })).toBeEnabled();
  await expect(view.getByRole('button', { name: 'Pause' })).toBeDisabled();
  const pausedAt = await stepOf();
  expect(pausedAt).toBeGreaterThanOrEqual(0);
  await expect(view.getByTestId('training-message')).toContainText(`Paused at step ${pausedAt}`);

  await view.getByRole('button', { name: 'Resume' }).click();
  await expect.poll(stepOf, { timeout: 180000 }).toBeGreaterThan(pausedAt);
  await expect
    .poll(async () => ((await view.getByTestId('loss-line').getAttribute('d').catch(() => '')) ?? '').split('L').length - 1, { timeout: 120000 })
    .toBeGreaterThan(3);
  await expect.poll(() => view.getByTestId('training-sample').count(), { timeout: 240000 }).toBeGreaterThan(0);
  await expect
    .poll(() => view.getByTestId('training-sample').first().evaluate((img: HTMLImageElement) => (img.complete ? img.naturalWidth : 0)), { timeout: 30000 })
    .toBeGreaterThan(0);
  await shot(page, 'training-running');

  await expect.poll(async () => (await stepOf(), view.getByTestId('training-state').textContent()), { timeout: 360000 }).toBe('Done');
  await expect(stepText).toHaveText('Step 40 / 40');
  await expect(view.getByRole('region', { name: /Samples at step \d+/ }).first()).toBeVisible();
  await expect(view.getByTestId('loss-line')).toHaveAttribute('d', /(L[^L]+){20}/);
  await shot(page, 'training-done');
  await expect(page.getByRole('navigation', { name: 'Datasets and trainings' }).getByRole('button', { name: /pink-hearts-e2e/ })).toContainText('Done');

  // "Use this LoRA": the Generate page with the LoRA at weight 1 and the trigger word in the prompt.
  await view.getByRole('button', { name: 'Use this LoRA' }).click();
  await expect(nav(page, 'Generate')).toHaveAttribute('aria-current', 'page');
  const row = page.getByTestId('lora-row');
  await expect(row).toHaveCount(1);
  await expect(row).toContainText('pink-hearts-e2e');
  await expect(row.getByRole('spinbutton')).toHaveValue('1');
  await expect(page.locator('textarea[name="prompt"]')).toHaveValue(new RegExp(TRIGGER));
  await page.locator('textarea[name="prompt"]').fill(`${TRIGGER}, a heart on a white background`);
  await row.getByRole('spinbutton').fill('0.8');
  await expect(row.getByRole('slider')).toHaveValue('0.8');
  await shot(page, 'generate-loras');

  await page.getByRole('button', { name: 'Generate', exact: true }).last().click();
  await expect(page.getByTestId('result-image')).toBeVisible({ timeout: 180000 });
  await page.keyboard.press('Control+3');
  await page.getByRole('listitem').first().click();
  const detail = page.getByRole('complementary', { name: 'Image details' });
  await expect(detail.getByTestId('detail-loras')).toContainText('pink-hearts-e2e × 0.8');
  await shot(page, 'gallery-lora');

  // "Use these settings" brings the LoRA back with its weight.
  await nav(page, 'Generate').click();
  await page.getByRole('button', { name: 'Remove pink-hearts-e2e' }).click();
  await expect(page.getByTestId('lora-row')).toHaveCount(0);
  await page.keyboard.press('Control+3');
  await page.getByRole('listitem').first().click();
  await detail.getByRole('button', { name: 'Use these settings' }).click();
  await expect(page.getByTestId('lora-row')).toContainText('pink-hearts-e2e');
  await expect(page.getByTestId('lora-row').getByRole('spinbutton')).toHaveValue('0.8');
  expect(errors).toEqual([]);
});
