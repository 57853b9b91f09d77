import { expect, test, type Page } from '@playwright/test';
import path from 'node:path';

const SHOTS = path.resolve(__dirname, '..', '..', 'test-results', 'screens');
const shot = (page: Page, name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`) });

test.describe.configure({ mode: 'serial' });

async function open(page: Page) {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  await page.goto(process.env.ATELIER_E2E_URL!);
  await expect(page.getByTestId('status-runtime')).toContainText('Ready on', { timeout: 120000 });
  return errors;
}

test('the shell loads with the runtime ready on this machine’s device', async ({ page }) => {
  const errors = await open(page);
  expect(new URL(page.url()).search).toBe(''); // the token left the address bar
  await page.getByRole('button', { name: 'Settings' }).click();
  await expect(page.getByTestId('runtime-state')).toContainText('Ready on');
  await expect(page.getByRole('region', { name: 'Runtime' })).toContainText(/torch \d/);
  await expect(page.getByRole('region', { name: 'Models' })).toContainText('tiny-sd15');
  await shot(page, 'settings');
  expect(errors).toEqual([]);
});

test('an empty prompt is refused with a message on the field, and nothing is queued', async ({ page }) => {
  await open(page);
  await page.getByRole('button', { name: 'Generate', exact: true }).last().click();
  await expect(page.getByRole('alert').first()).toContainText('is empty');
  await expect(page.getByRole('complementary', { name: 'Queue' })).toContainText('No jobs yet');
});

test('generates from the UI with live progress, then finds it in the gallery with its parameters', async ({ page }) => {
  const errors = await open(page);
  await page.locator('textarea[name="prompt"]').fill('a red circle on a white background');
  await page.locator('textarea[name="negativePrompt"]').fill('blurry');
  await page.locator('input[name="steps"]').fill('24');
  await page.locator('input[name="seed"]').fill('1234');
  await expect(page.locator('select[name="model"]')).toContainText('tiny-sd15');
  // Record every progress text and preview the page shows, however briefly.
  await page.evaluate(() => {
    const w = window as unknown as { seen: string[]; previews: number };
    w.seen = [];
    w.previews = 0;
    new MutationObserver(() => {
      const t = document.querySelector('[data-testid="progress-text"]')?.textContent;
      if (t && w.seen[w.seen.length - 1] !== t) w.seen.push(t);
      if (document.querySelector('img.preview')) w.previews++;
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  await page.keyboard.press('Control+Enter');
  const result = page.getByTestId('result-image');
  await expect(result).toBeVisible({ timeout: 120000 });
  const { seen, previews } = await page.evaluate(() => {
    const w = window as unknown as { seen: string[]; previews: number };
    return { seen: w.seen, previews: w.previews };
  });
  expect(seen.some((t) => /^Step \d+ \/ 24$/.test(t) && !t.startsWith('Step 24'))).toBe(true);
  expect(previews).toBeGreaterThan(0);
  expect(await result.evaluate((img: HTMLImageElement) => [img.naturalWidth, img.naturalHeight])).toEqual([64, 64]);
  await expect(page.getByRole('figure')).toContainText('seed 1234');
  await shot(page, 'generate-result');

  await page.keyboard.press('Control+3');
  await expect(page.getByTestId('gallery-count')).toHaveText('1 generation');
  await page.getByRole('listitem').first().click();
  const detail = page.getByRole('complementary', { name: 'Image details' });
  await expect(detail).toContainText('a red circle on a white background');
  await expect(detail).toContainText('1234');
  await expect(detail).toContainText('blurry');
  await expect(detail).toContainText('tiny-sd15');
  await shot(page, 'gallery');

  await page.getByRole('searchbox').fill('purple');
  await expect(page.getByTestId('gallery-count')).toHaveText('0 generations');
  await page.getByRole('searchbox').fill('RED CIRCLE');
  await expect(page.getByTestId('gallery-count')).toHaveText('1 generation');
  expect(errors).toEqual([]);
});

test('"Use these settings" restores every parameter and locks the seed', async ({ page }) => {
  await open(page);
  await page.keyboard.press('Control+3');
  await page.getByRole('listitem').first().click();
  await page.getByRole('button', { name: 'Use these settings' }).click();
  await expect(page.locator('textarea[name="prompt"]')).toHaveValue('a red circle on a white background');
  await expect(page.locator('textarea[name="negativePrompt"]')).toHaveValue('blurry');
  await expect(page.locator('input[name="seed"]')).toHaveValue('1234');
  await expect(page.locator('input[name="steps"]')).toHaveValue('24');
  await expect(page.getByRole('button', { name: 'Lock seed' })).toHaveAttribute('aria-pressed', 'true');
});

test('Escape cancels a running generation and nothing is saved', async ({ page }) => {
  await open(page);
  await page.locator('textarea[name="prompt"]').fill('a slow blue star');
  await page.locator('input[name="steps"]').fill('200');
  await page.locator('select[name="sizePreset"]').selectOption('256x256');
  await page.keyboard.press('Control+Enter');
  await expect(page.getByTestId('progress-text')).toContainText(/Step [1-9]/, { timeout: 120000 });
  await page.keyboard.press('Escape');
  await expect(page.getByRole('heading', { name: 'Cancelled' })).toBeVisible({ timeout: 30000 });
  await page.keyboard.press('Control+3');
  await expect(page.getByTestId('gallery-count')).toHaveText('1 generation');
});
