import { expect, test } from '@playwright/test';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { tmpDir, writeSafetensors } from '../helpers';

const SHOTS = path.resolve(__dirname, '..', '..', 'test-results', 'screens');

test('a model from a URL: progress, the source checksum, then in the library; a pickle is refused', async ({ page }) => {
  // A LoRA file served with ranges and a Hugging Face style sha256 header, and a pickle beside it.
  const file = path.join(tmpDir(), 'inkwash.safetensors');
  writeSafetensors(file, Array.from({ length: 4000 }, (_, i) => `lora_unet_down_blocks_0_attentions_0_proj_in_${i}.lora_down.weight`));
  const body = fs.readFileSync(file);
  const sha = createHash('sha256').update(body).digest('hex');
  const server = http.createServer((req, res) => {
    if (req.url === '/files/old.safetensors') {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      return res.end(Buffer.concat([Buffer.from([0x80, 0x02, 0x7d]), Buffer.alloc(2000)]));
    }
    res.writeHead(200, { 'content-length': body.length, 'x-linked-etag': `"${sha}"`, 'x-repo-commit': 'abc', 'accept-ranges': 'bytes' });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    await page.goto(process.env.ATELIER_E2E_URL!);
    await page.getByRole('navigation', { name: 'Main' }).getByRole('button', { name: 'Settings' }).click();
    const models = page.getByRole('region', { name: 'Models' });
    await models.getByRole('textbox', { name: 'Model URL' }).fill(`${base}/files/inkwash.safetensors`);
    await models.getByRole('button', { name: 'Download' }).click();
    const row = models.getByTestId('download-row').filter({ hasText: 'inkwash.safetensors' });
    await expect(row).toContainText('done', { timeout: 30000 });
    await expect(row).toContainText('sha256 from the source');
    await expect(page.getByRole('status').filter({ hasText: 'inkwash.safetensors downloaded, verified and added to the library' })).toBeVisible();
    const libRow = models.getByRole('row').filter({ hasText: 'inkwash' });
    await expect(libRow).toContainText('lora');
    await expect(libRow).toContainText('library');

    await models.getByRole('textbox', { name: 'Model URL' }).fill(`${base}/files/old.safetensors`);
    await models.getByRole('button', { name: 'Download' }).click();
    const bad = models.getByTestId('download-row').filter({ hasText: 'old.safetensors' });
    await expect(bad).toContainText('failed', { timeout: 30000 });
    await expect(bad).toContainText(/pickle/i);
    await expect(bad.getByRole('button', { name: 'Resume' })).toHaveCount(0); // nothing to resume: the file was refused and deleted
    await bad.getByRole('button', { name: 'Remove old.safetensors from the list' }).click();
    await expect(bad).toHaveCount(0);
    await expect(models.getByRole('row').filter({ hasText: /^old/ })).toHaveCount(0);
    await models.screenshot({ path: path.join(SHOTS, 'settings-downloads.png') });
    expect(fs.existsSync(path.join(process.env.ATELIER_E2E_ROOT!, 'data', 'models', 'downloads', 'old.safetensors'))).toBe(false);
    expect(fs.readFileSync(path.join(process.env.ATELIER_E2E_ROOT!, 'data', 'models', 'downloads', 'inkwash.safetensors')).equals(body)).toBe(true);
  } finally {
    server.close();
  }
});
