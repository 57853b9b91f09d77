import { expect, test, type Page } from '@playwright/test';
import fs from 'node:fs';
import path from 'node:path';

const SHOTS = path.resolve(__dirname, '..', '..', 'test-results', 'screens');
const OPENAI = () => process.env.ATELIER_E2E_OPENAI!;

async function openaiLog(): Promise<{ path: string; json: Record<string, unknown> | null; headers: Record<string, string> }[]> {
  const all = (await (await fetch(`${OPENAI()}/__requests`)).json()) as { path: string; json: Record<string, unknown> | null; headers: Record<string, string> }[];
  return all.filter((r) => r.path.startsWith('/v1/images/'));
}

async function script(items: unknown[]) {
  await fetch(`${OPENAI()}/__script`, { method: 'POST', body: JSON.stringify(items) });
}

async function open(page: Page) {
  await page.goto(process.env.ATELIER_E2E_URL!);
  await expect(page.getByTestId('status-runtime')).toContainText('Ready on', { timeout: 120000 });
}

test('cloud mode: only the options the model takes, a budget warning, an image in the history with its cost, retries and refusals shown', async ({ page }) => {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await fetch(`${OPENAI()}/__reset`, { method: 'POST' });
  await open(page);

  // Settings: the key is read from OPENAI_API_KEY (web mode), shown by its last four characters only; a budget.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Settings' }).click();
  await expect(page.getByTestId('cloud-key-status')).toHaveText('API key …TAIL · from OPENAI_API_KEY');
  await expect(page.locator('input[name="openaiKey"]')).toHaveCount(0);
  await page.locator('input[name="cloudBudget"]').fill('0.3');
  await page.locator('input[name="cloudBudget"]').blur();
  await expect(page.getByTestId('cloud-spend')).toContainText('$0.00 of $0.30');
  await page.getByRole('region', { name: 'Cloud' }).screenshot({ path: path.join(SHOTS, 'cloud-settings.png') });

  await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Generate' }).click();
  await page.getByRole('tab', { name: 'Cloud · OpenAI' }).click();
  // Local-only controls go away; DALL·E 3 shows style, GPT Image does not.
  await expect(page.locator('select[name="sampler"]')).toHaveCount(0);
  await expect(page.locator('textarea[name="negativePrompt"]')).toHaveCount(0);
  await page.locator('select[name="cloudModel"]').selectOption('dall-e-3');
  await expect(page.locator('select[name="cloudQuality"] option')).toHaveText(['Standard', 'HD']);
  await expect(page.locator('select[name="cloudStyle"] option')).toHaveText(['Vivid', 'Natural']);
  await page.locator('select[name="cloudModel"]').selectOption('gpt-image-1');
  await expect(page.locator('select[name="cloudStyle"]')).toHaveCount(0);
  await expect(page.locator('select[name="cloudSize"] option')).toHaveText(['1024×1024', '1536×1024', '1024×1536', 'Auto']);

  await page.locator('textarea[name="prompt"]').fill('a paper lantern festival at night');
  await page.locator('select[name="cloudSize"]').selectOption('1024x1536');
  await page.locator('select[name="cloudQuality"]').selectOption('high');
  await page.locator('input[name="batch"]').fill('2');
  await expect(page.getByTestId('cloud-cost')).toHaveText('≈ $0.50 · this month $0.00 of $0.30');
  await page.getByRole('form', { name: 'Generate' }).getByRole('button', { name: 'Generate', exact: true }).click();
  await expect(page.getByTestId('budget-warning')).toContainText('past your budget of $0.30');
  await page.screenshot({ path: path.join(SHOTS, 'cloud-budget-warning.png') });
  expect(await openaiLog()).toHaveLength(0); // nothing sent before the user goes on
  await page.getByRole('form', { name: 'Generate' }).getByRole('button', { name: 'Generate anyway' }).click();
  await expect(page.getByTestId('result-image')).toHaveCount(2, { timeout: 30000 });
  await expect(page.getByRole('region', { name: 'Stage' })).toContainText('gpt-image-1 · 1024×1536 · $0.250');
  await page.screenshot({ path: path.join(SHOTS, 'cloud-result.png') });
  const [req] = await openaiLog();
  expect(req.json).toEqual({ model: 'gpt-image-1', prompt: 'a paper lantern festival at night', n: 2, size: '1024x1536', quality: 'high' });
  expect(req.headers.authorization).toBe(`Bearer ${process.env.ATELIER_E2E_OPENAI_KEY}`);

  // The history has it, with the backend and the cost; re-running restores the cloud settings.
  await page.keyboard.press('Control+3');
  await page.getByRole('searchbox').fill('lantern festival');
  await expect(page.getByTestId('gallery-count')).toHaveText('1 generation');
  await page.getByRole('listitem').first().click();
  const detail = page.getByRole('complementary', { name: 'Image details' });
  await expect(detail).toContainText('cloud · OpenAI');
  await expect(detail.getByTestId('detail-cost')).toHaveText('$0.500');
  await expect(detail.getByRole('button', { name: 'Variations…' })).toHaveCount(0);
  await detail.getByRole('button', { name: 'Use these settings' }).click();
  await expect(page.getByRole('tab', { name: 'Cloud · OpenAI' })).toHaveAttribute('aria-selected', 'true');
  await expect(page.locator('select[name="cloudSize"]')).toHaveValue('1024x1536');
  await expect(page.locator('select[name="cloudQuality"]')).toHaveValue('high');

  // A 429 with retry-after: the stage says what it waits for, then the image comes.
  await page.locator('input[name="batch"]').fill('1');
  await page.locator('select[name="cloudQuality"]').selectOption('low');
  await page.locator('textarea[name="prompt"]').fill('a quiet tea house in the rain');
  await script([{ status: 429, headers: { 'retry-after': '2' }, body: { error: { message: 'Rate limit reached', type: 'requests', code: 'rate_limit_exceeded' } } }]);
  await page.getByRole('form', { name: 'Generate' }).getByRole('button', { name: 'Generate', exact: true }).click();
  await expect(page.getByTestId('budget-warning')).toContainText('take this month\'s cloud spend to $0.52'); // still over: $0.50 spent
  await page.getByRole('form', { name: 'Generate' }).getByRole('button', { name: 'Generate anyway' }).click();
  await expect(page.getByTestId('progress-text')).toContainText('Rate limited by OpenAI: trying again in 2 s (attempt 2 of 4)');
  await expect(page.getByTestId('result-image')).toHaveCount(1, { timeout: 30000 });

  // A content-policy refusal: said as such, nothing saved.
  await script([{ status: 400, body: { error: { message: 'Your request was rejected as a result of our safety system.', type: 'image_generation_user_error', code: 'content_policy_violation' } } }]);
  await page.locator('textarea[name="prompt"]').fill('something the policy refuses');
  await page.getByRole('form', { name: 'Generate' }).getByRole('button', { name: 'Generate', exact: true }).click();
  await page.getByRole('form', { name: 'Generate' }).getByRole('button', { name: 'Generate anyway' }).click();
  await expect(page.getByRole('region', { name: 'Stage' }).getByRole('alert')).toContainText('declined this prompt under its content policy');
  await page.keyboard.press('Control+3');
  await page.getByRole('searchbox').fill('policy refuses');
  await expect(page.getByTestId('gallery-count')).toHaveText('0 generations');

  // The key was never written by the app: not in the database, images, settings or the server log.
  const root = process.env.ATELIER_E2E_ROOT!;
  const key = process.env.ATELIER_E2E_OPENAI_KEY!;
  const leaks: string[] = [];
  let files = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const f = path.join(d, e.name);
      if (e.isDirectory()) walk(f);
      else if (e.isFile()) {
        files++;
        if (fs.readFileSync(f).includes(key)) leaks.push(f);
      }
    }
  };
  walk(root);
  console.log(`cloud e2e: ${files} files the app wrote searched for the key, ${leaks.length} containing it`);
  expect(leaks).toEqual([]);
  expect(errors).toEqual([]);
});
