/**
 * History that artists trust, end to end: prompt lists and matrices through
 * the queue (reordered, cancelled, retried, failed), the result cache, then
 * the gallery (search, filters, favorites, boards, multi-select, delete), the
 * detail view's exports and variations, and a PNG dropped on the app.
 *
 * Prompts carry the word "zq" so the counts hold whatever other specs left in the library.
 */
import { expect, test, type Locator, type Page } from '@playwright/test';
import fs from 'node:fs';
import path from 'node:path';

const SHOTS = path.resolve(__dirname, '..', '..', 'test-results', 'screens');
const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
const TINY = 'tiny-sd15 · SD 1.5';
const SHAPES = 'atelier-shapes · SD 1.5';

test.describe.configure({ mode: 'serial' });

async function open(page: Page) {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && !/Failed to load resource/.test(m.text()) && errors.push(m.text()));
  await page.goto(process.env.ATELIER_E2E_URL!);
  await expect(page.getByTestId('status-runtime')).toContainText('Ready on', { timeout: 120000 });
  await expect(page.locator('select[name="model"]')).toContainText('tiny-sd15');
  return errors;
}

async function settings(page: Page, o: { model?: string; prompt?: string; steps?: number; size?: string; seed?: number }) {
  if (o.model) await page.locator('select[name="model"]').selectOption({ label: o.model });
  if (o.size) await page.locator('select[name="sizePreset"]').selectOption(o.size);
  if (o.steps !== undefined) await page.locator('input[name="steps"]').fill(String(o.steps));
  if (o.seed !== undefined) await page.locator('input[name="seed"]').fill(String(o.seed));
  if (o.prompt !== undefined) await page.locator('textarea[name="prompt"]').fill(o.prompt);
}

const generateButton = (page: Page) => page.locator('form[aria-label="Generate"] button[type="submit"]');
const active = (page: Page) => page.getByRole('list', { name: 'Waiting and running' }).getByTestId('queue-job');
const queued = (page: Page) => page.locator('[data-testid="queue-job"][data-state="queued"]');
const recent = (page: Page) => page.getByRole('list', { name: 'Recent jobs' }).getByTestId('queue-job');
const row = (page: Page, prompt: string) => page.getByTestId('queue-job').filter({ has: page.locator('.job-prompt', { hasText: new RegExp(`^${prompt}$`) }) });
const queuedPrompts = (page: Page) => queued(page).locator('.job-prompt').allTextContents();
const count = (page: Page) => page.getByTestId('gallery-count');
const cells = (page: Page) => page.getByTestId('gallery-grid').getByRole('listitem');

/** Type a search and wait until the grid shows its results (the box is debounced). */
async function search(page: Page, q: string) {
  await page.getByRole('searchbox').fill(q);
  await expect(page.getByTestId('gallery-grid')).toHaveAttribute('data-query', q);
  await expect(page.getByTestId('gallery-grid')).toHaveAttribute('aria-busy', 'false');
}

async function countNumber(page: Page): Promise<number> {
  return Number((await count(page).textContent())!.replace(/[^0-9]/g, ''));
}

async function dropFile(page: Page, target: Locator | string, make: string, name: string) {
  const dt = await page.evaluateHandle(
    async ([src, fileName]) => {
      const blob = src.startsWith('text:') ? new Blob([src.slice(5)], { type: 'text/plain' }) : await (await fetch(src)).blob();
      const d = new DataTransfer();
      d.items.add(new File([blob], fileName, { type: blob.type || 'application/octet-stream' }));
      return d;
    },
    [make, name] as const,
  );
  const sel = typeof target === 'string' ? page.locator(target) : target;
  for (const type of ['dragenter', 'dragover', 'drop']) await sel.dispatchEvent(type, { dataTransfer: dt });
}

test('prompt matrix and lists queue many jobs; the queue reorders, cancels, retries and shows failures', async ({ page }) => {
  // About 12 small generations; a busy 2-core machine needs the margin.
  test.setTimeout(480000);
  const errors = await open(page);

  // An image to start an img2img from; it is deleted while that job waits, so the job fails.
  await settings(page, { model: TINY, prompt: 'zq seed image', steps: 2, size: '64x64' });
  await generateButton(page).click();
  await expect(page.getByTestId('result-image')).toBeVisible({ timeout: 120000 });

  // A long job holds the queue while the others are reordered.
  await settings(page, { prompt: 'zq slow star', steps: 200, size: '256x256' });
  await generateButton(page).click();
  await expect(page.getByTestId('progress-text')).toContainText(/Step [1-9]/, { timeout: 120000 });

  await page.keyboard.press('Control+3');
  await search(page, 'seed image');
  await expect(count(page)).toHaveText('1 generation');
  await cells(page).first().click();
  await page.getByRole('button', { name: 'Use as starting image' }).click();
  await settings(page, { prompt: 'zq doomed img2img', steps: 2 });
  await generateButton(page).click();
  await expect(row(page, 'zq doomed img2img')).toHaveAttribute('data-state', 'queued');
  await page.keyboard.press('Control+3');
  await cells(page).first().click();
  await page.getByRole('complementary', { name: 'Image details' }).getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Delete' }).click();
  await expect(count(page)).toHaveText('0 generations');
  await page.keyboard.press('Control+1');
  await page.getByRole('tab', { name: 'Text to image' }).click();

  // Prompt matrix: 2 × 2 = 4 jobs, announced before anything is queued.
  await page.locator('select[name="batchMode"]').selectOption('matrix');
  await settings(page, { prompt: 'zq a {red|blue} {circle|square}', size: '64x64', steps: 2 });
  await expect(page.getByTestId('batch-summary')).toHaveText('4 jobs will be queued');
  await page.locator('textarea[name="prompt"]').fill('zq {a|b|c|d|e|f|g|h} {1|2|3|4|5|6|7|8} {x|y|z|w|v|u|t|s} {p|q}');
  await expect(page.getByTestId('batch-summary')).toContainText('1,024 combinations');
  await expect(generateButton(page)).toBeDisabled();
  await page.locator('textarea[name="prompt"]').fill('zq a {red|blue} {circle|square}');
  await shot(page, 'generate-batch-matrix');
  await generateButton(page).click();
  await expect(generateButton(page)).toHaveText('Queue 4 jobs');
  await expect(queued(page)).toHaveCount(5);
  expect(await queuedPrompts(page)).toEqual(['zq doomed img2img', 'zq a red circle', 'zq a red square', 'zq a blue circle', 'zq a blue square']);

  // Up/down buttons and drag and drop reorder the waiting jobs (jobs.move).
  await row(page, 'zq a blue square').getByRole('button', { name: 'Move up' }).click();
  await expect.poll(() => queuedPrompts(page)).toEqual(['zq doomed img2img', 'zq a red circle', 'zq a red square', 'zq a blue square', 'zq a blue circle']);
  await row(page, 'zq a blue circle').dragTo(row(page, 'zq doomed img2img'), { targetPosition: { x: 40, y: 3 } });
  await expect.poll(() => queuedPrompts(page)).toEqual(['zq a blue circle', 'zq doomed img2img', 'zq a red circle', 'zq a red square', 'zq a blue square']);

  // Cancel a waiting job, then retry it: it queues again at the end.
  await row(page, 'zq a red square').getByRole('button', { name: 'Cancel job' }).click();
  await expect(row(page, 'zq a red square')).toHaveAttribute('data-state', 'cancelled');
  await shot(page, 'queue-reorder');
  await row(page, 'zq a red square').getByRole('button', { name: 'Retry' }).click();
  await expect.poll(() => queuedPrompts(page)).toEqual(['zq a blue circle', 'zq doomed img2img', 'zq a red circle', 'zq a blue square', 'zq a red square']);

  // Let the queue run: the img2img whose starting image is gone fails (and offers a retry).
  await active(page).filter({ hasText: 'zq slow star' }).getByRole('button', { name: 'Cancel job' }).click();
  await expect(queued(page)).toHaveCount(0, { timeout: 240000 });
  await expect(active(page)).toHaveCount(0, { timeout: 120000 });
  await expect(row(page, 'zq doomed img2img')).toHaveAttribute('data-state', 'failed');
  await expect(row(page, 'zq doomed img2img').getByRole('button', { name: 'Retry' })).toBeVisible();
  await expect(page.locator('[data-testid="queue-job"][data-state="done"]').filter({ hasText: /zq a (red|blue) (circle|square)/ })).toHaveCount(4);

  // One prompt per line.
  await page.locator('select[name="batchMode"]').selectOption('lines');
  await page.locator('textarea[name="prompt"]').fill('zq line one lighthouse\n\nzq line two lighthouse\nzq line three lighthouse\n');
  await expect(page.getByTestId('batch-summary')).toHaveText('3 jobs will be queued');
  await generateButton(page).click();
  await expect(page.locator('[data-testid="queue-job"][data-state="done"]').filter({ hasText: 'lighthouse' })).toHaveCount(3, { timeout: 180000 });
  await page.locator('select[name="batchMode"]').selectOption('single');

  // The same request again is answered from the history; with the cache off it is generated anew.
  await settings(page, { prompt: 'zq cache probe', seed: 777 });
  if ((await page.getByRole('button', { name: 'Lock seed' }).getAttribute('aria-pressed')) !== 'true') await page.getByRole('button', { name: 'Lock seed' }).click();
  await generateButton(page).click();
  await expect(recent(page).first()).toHaveAttribute('data-state', 'done', { timeout: 120000 });
  await expect(recent(page).first()).toContainText('zq cache probe');
  await generateButton(page).click();
  await expect(recent(page).nth(1)).toContainText('zq cache probe');
  await expect(recent(page).first()).toHaveAttribute('data-state', 'cached', { timeout: 60000 });
  await expect(recent(page).first().getByTestId('job-state')).toHaveText('cached');
  await expect(page.getByTestId('stage-cached')).toBeVisible();
  await expect(page.getByTestId('result-image')).toBeVisible();
  await shot(page, 'stage-cached');
  await page.getByRole('checkbox', { name: /Reuse identical results/ }).uncheck();
  await generateButton(page).click();
  await expect(recent(page).nth(2)).toContainText('zq cache probe');
  await expect(recent(page).first()).toHaveAttribute('data-state', 'done', { timeout: 120000 });
  await expect(page.getByTestId('stage-cached')).toHaveCount(0);
  await page.getByRole('checkbox', { name: /Reuse identical results/ }).check();

  // Another model, for the model filter.
  await settings(page, { model: SHAPES, prompt: 'zq shapes sample', steps: 2, size: '64x64' });
  await generateButton(page).click();
  await expect(recent(page).first()).toContainText('zq shapes sample', { timeout: 60000 });
  await expect(recent(page).first()).toHaveAttribute('data-state', 'done', { timeout: 120000 });
  await shot(page, 'queue-states');
  expect(errors).toEqual([]);
});

test('the gallery searches, filters, favorites, collects in boards, multi-selects and deletes', async ({ page }) => {
  const errors = await open(page);
  await page.keyboard.press('Control+3');
  const grid = page.getByTestId('gallery-grid');
  await expect(grid.getByRole('listitem').first()).toBeVisible();

  // Full-text search by a word prefix.
  await search(page, 'lightho');
  await expect(count(page)).toHaveText('3 generations');
  await search(page, 'zq');
  await expect.poll(() => countNumber(page)).toBeGreaterThanOrEqual(10);
  const all = await countNumber(page);

  // The model filter narrows.
  await page.locator('select[name="filterModel"]').selectOption('atelier-shapes');
  await expect(count(page)).toHaveText('1 generation');
  await page.locator('select[name="filterModel"]').selectOption('tiny-sd15');
  await expect(count(page)).toHaveText(`${all - 1} generations`);
  await page.locator('select[name="filterModel"]').selectOption('');

  // Favorite one; the favorites filter shows it alone.
  await search(page, 'zq circle');
  await expect(count(page)).toHaveText('2 generations');
  await cells(page).first().getByRole('button', { name: 'Favorite' }).click();
  await expect(cells(page).first().getByRole('button', { name: 'Unfavorite' })).toBeVisible();
  await page.getByRole('group', { name: 'Filters' }).getByRole('button', { name: /Favorites/ }).click();
  await expect(count(page)).toHaveText('1 generation');
  await expect(cells(page)).toHaveCount(1);
  await page.getByRole('group', { name: 'Filters' }).getByRole('button', { name: /Favorites/ }).click();

  // Two images into a new board; the board filters.
  await search(page, 'zq square');
  await expect(count(page)).toHaveText('2 generations');
  await cells(page).nth(0).click();
  await cells(page).nth(1).click({ modifiers: ['Control'] });
  await expect(page.getByTestId('selection-count')).toHaveText('2 selected');
  await page.locator('select[name="filterSampler"]').selectOption('Euler a');
  await expect(count(page)).toHaveText('2 generations');
  await cells(page).nth(0).click();
  await cells(page).nth(1).click({ modifiers: ['Control'] });
  await shot(page, 'gallery-selection');
  await page.getByRole('toolbar', { name: 'Selection' }).getByRole('button', { name: 'Add to board' }).click();
  await page.getByRole('menuitem', { name: 'New board…' }).click();
  await page.getByRole('dialog').locator('input[name="ask"]').fill('zq picks');
  await page.getByRole('dialog').getByRole('button', { name: 'Create and add' }).click();
  const board = page.getByRole('navigation', { name: 'Boards' }).locator('.board-row', { hasText: 'zq picks' });
  await expect(board.locator('.board-count')).toHaveText('2');
  await page.getByRole('button', { name: 'Clear filters' }).click();
  await board.locator('.board-main').click();
  await expect(count(page)).toHaveText('2 generations');
  await expect(page.getByRole('searchbox')).toHaveValue('');

  // Shift-click selects a range; the Delete key asks, then deletes.
  await page.getByRole('button', { name: 'All generations' }).click();
  await search(page, 'lighthouse');
  await expect(count(page)).toHaveText('3 generations');
  await cells(page).nth(0).click();
  await cells(page).nth(2).click({ modifiers: ['Shift'] });
  await expect(page.getByTestId('selection-count')).toHaveText('3 selected');
  await page.keyboard.press('Escape');
  await expect(page.getByTestId('selection-count')).toHaveCount(0);
  await cells(page).nth(0).click();
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('Shift+ArrowRight');
  await expect(page.getByTestId('selection-count')).toHaveText('2 selected');
  await page.keyboard.press('Control+a');
  await expect(page.getByTestId('selection-count')).toHaveText('3 selected');
  await page.keyboard.press('Delete');
  await expect(page.getByRole('dialog')).toContainText('Delete 3 generations?');
  await page.getByRole('dialog').getByRole('button', { name: 'Delete 3' }).click();
  await expect(count(page)).toHaveText('0 generations');
  await search(page, 'zq');
  await expect(count(page)).toHaveText(`${all - 3} generations`);
  expect(errors).toEqual([]);
});

test('the detail view exports a ComfyUI workflow, queues variations, and a dropped PNG restores its settings', async ({ page }) => {
  const errors = await open(page);
  await page.keyboard.press('Control+3');
  await search(page, 'cache probe');
  await expect(count(page)).toHaveText('2 generations');
  await cells(page).first().click();
  const detail = page.getByRole('complementary', { name: 'Image details' });
  await expect(detail.getByTestId('detail-seed')).toHaveText('777');
  await expect(detail).toContainText('tiny-sd15');
  await expect(detail).toContainText('Euler a');

  // ComfyUI API workflow, as a download: its KSampler has the image's seed.
  await detail.getByRole('button', { name: 'Export' }).click();
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('menuitem', { name: /ComfyUI/ }).click()]);
  expect(download.suggestedFilename()).toMatch(/comfyui-api\.json$/);
  const wf = JSON.parse(fs.readFileSync((await download.path())!, 'utf8')) as Record<string, { class_type: string; inputs: Record<string, unknown> }>;
  const ks = Object.values(wf).find((n) => n.class_type === 'KSampler');
  expect(ks?.inputs.seed).toBe(777);
  expect(ks?.inputs.steps).toBe(2);

  // Same seed, new prompt: the settings with the seed locked, the prompt focused to be rewritten.
  await detail.getByRole('button', { name: 'Same seed, new prompt' }).click();
  await expect(page.locator('textarea[name="prompt"]')).toBeFocused();
  await expect(page.locator('textarea[name="prompt"]')).toHaveValue('zq cache probe');
  await expect(page.locator('input[name="seed"]')).toHaveValue('777');
  await expect(page.getByRole('button', { name: 'Lock seed' })).toHaveAttribute('aria-pressed', 'true');
  await expect(page.getByRole('checkbox', { name: /Reuse identical results/ })).toBeChecked();
  await page.keyboard.press('Control+3');

  // Large view, for the screenshot.
  await cells(page).first().click();
  await page.keyboard.press('Enter');
  await expect(detail).toHaveClass(/expanded/);
  await shot(page, 'gallery-detail');
  await page.keyboard.press('Escape');
  await expect(detail).not.toHaveClass(/expanded/);

  // Variations: seeds 778, 779, 780.
  await detail.getByRole('button', { name: 'Variations…' }).click();
  await page.getByRole('dialog').locator('input[name="ask"]').fill('3');
  await page.getByRole('dialog').getByRole('button', { name: 'Queue' }).click();
  await expect(page.getByRole('status').filter({ hasText: 'Queued 3 variations' })).toContainText('778–780');
  await page.keyboard.press('Control+1');
  for (const seed of [778, 779, 780]) await expect(page.getByTestId('queue-job').filter({ hasText: 'zq cache probe' }).filter({ hasText: `seed ${seed} ` })).toHaveCount(1);

  // A history PNG dropped on the app: its prompt and seed come back into the form.
  await page.keyboard.press('Control+3');
  await search(page, 'zq blue square');
  await cells(page).first().click();
  const seed = (await detail.getByTestId('detail-seed').textContent())!.trim();
  const src = (await detail.getByTestId('detail-image').getAttribute('src'))!;
  await page.keyboard.press('Control+1');
  await settings(page, { prompt: 'something else entirely', seed: 1 });
  await page.keyboard.press('Control+3');
  await dropFile(page, '.gallery', src, 'blue-square.png');
  await expect(page.locator('textarea[name="prompt"]')).toHaveValue('zq a blue square');
  await expect(page.locator('input[name="seed"]')).toHaveValue(seed);
  await expect(page.locator('select[name="model"]')).toHaveValue(/.+/);
  await expect(page.getByTestId('recall-panel')).toContainText('Atelier');
  await expect(page.getByTestId('recall-panel')).toContainText('seed');
  await shot(page, 'recall-drop');

  // Not a PNG: the server says so.
  await dropFile(page, 'main', 'text:hello, I am not an image at all', 'notes.txt');
  await expect(page.getByRole('alert').filter({ hasText: 'notes.txt' })).toContainText('not a PNG');
  expect(errors).toEqual([]);
});
