/**
 * `npm run web`: Atelier's services and UI in a browser, on 127.0.0.1.
 * Options: --port N (or ATELIER_PORT), --host ADDR (loopback unless you mean it),
 * ATELIER_DATA_DIR, ATELIER_PYTHON (use an existing interpreter), ATELIER_TOKEN.
 */
import Conf from 'conf';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { defaultDataDir, SETTINGS_NAME } from '../lib/paths';
import { createServices } from '../services';
import { storeBackend } from '../services/settings/settings';
import { isLoopbackHost, startWebServer } from './server';

declare const __APP_VERSION__: string;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function main() {
  const appRoot = path.resolve(__dirname, '..', '..');
  const dataDir = defaultDataDir();
  const host = arg('host') ?? process.env.ATELIER_HOST ?? '127.0.0.1';
  const port = Number(arg('port') ?? process.env.ATELIER_PORT ?? 7860);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`--port must be 0-65535, got ${arg('port') ?? process.env.ATELIER_PORT}`);
  const loopback = isLoopbackHost(host);
  const token = process.env.ATELIER_TOKEN || randomBytes(24).toString('base64url');
  const conf = new Conf({ projectName: 'atelier', cwd: dataDir, configName: SETTINGS_NAME });
  const services = createServices({
    dataDir,
    appRoot,
    settingsBackend: storeBackend(conf as unknown as { store: Record<string, unknown> }),
    shell: 'web',
    version: __APP_VERSION__,
    pythonOverride: process.env.ATELIER_PYTHON,
    autoProvision: process.env.ATELIER_NO_AUTO_PROVISION !== '1',
    log: (line) => console.error(line),
  });
  const server = await startWebServer({ services, rendererDir: path.join(appRoot, 'dist', 'renderer'), token, host, port, log: (l) => console.error(l) });
  if (!loopback) console.error(`WARNING: listening on ${host}, reachable from other machines; the token is the only lock.`);
  console.log(`Atelier (web mode) is running. Open:\n\n  ${server.url}\n\nLibrary: ${dataDir}\nPress Ctrl+C to stop.`);
  void services.runtime.boot();
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    await server.close();
    await services.dispose();
    process.exit(0);
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

main().catch((err) => {
  console.error(`Atelier could not start: ${err?.message ?? err}`);
  process.exit(1);
});
