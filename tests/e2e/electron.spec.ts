/**
 * Electron smoke test: launches the real app where Electron's binary exists
 * (it cannot be downloaded on every machine) and says plainly when it skipped.
 */
import { _electron as electron, expect, test } from '@playwright/test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
const hasBinary = fs.existsSync(path.join(ROOT, 'node_modules/electron/path.txt'));

test('the Electron app starts, shows the shell and keeps Node out of the page', async () => {
  if (!hasBinary) console.log('Electron smoke test SKIPPED: the Electron binary is not installed on this machine (ELECTRON_SKIP_BINARY_DOWNLOAD).');
  test.skip(!hasBinary, 'Electron binary not installed on this machine');
  const app = await electron.launch({
    args: [ROOT, '--no-sandbox'],
    env: { ...process.env, ATELIER_DATA_DIR: fs.mkdtempSync(path.join(os.tmpdir(), 'atelier-electron-')), ATELIER_NO_AUTO_PROVISION: '1' } as Record<string, string>,
  });
  const win = await app.firstWindow();
  await expect(win.getByRole('navigation', { name: 'Main' })).toBeVisible();
  expect(await win.evaluate(() => typeof (window as unknown as { require?: unknown }).require)).toBe('undefined');
  expect(await win.evaluate(() => typeof (window as unknown as { process?: unknown }).process)).toBe('undefined');
  expect(await win.evaluate(() => Object.keys((window as unknown as { atelier: object }).atelier).sort())).toEqual(['call', 'on', 'shell']);
  const info = await win.evaluate(() => (window as unknown as { atelier: { call(m: string, i: unknown): Promise<unknown> } }).atelier.call('app.info', {}));
  expect(info).toMatchObject({ ok: true, value: { shell: 'electron' } });
  await app.close();
});
