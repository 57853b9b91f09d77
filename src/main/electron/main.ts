/**
 * The thin Electron shell: one window, the `atelier://` protocol (renderer and
 * library files), the IPC adapter, and the security settings of Electron's
 * checklist. Everything else lives in the services, which know nothing of Electron.
 */
import { app, BrowserWindow, ipcMain, Menu, protocol, safeStorage, session, shell, type IpcMainInvokeEvent, type WebContents } from 'electron';
import Store from 'electron-store';
import path from 'node:path';
import { createServices, type Services } from '../services';
import { encryptedFileKeyStore } from '../services/cloud/keystore';
import { storeBackend } from '../services/settings/settings';
import { SETTINGS_NAME } from '../lib/paths';
import { isAppUrl, registerAtelierProtocol, RENDERER_URL } from './protocol';

declare const __APP_VERSION__: string;

protocol.registerSchemesAsPrivileged([
  { scheme: 'atelier', privileges: { standard: true, secure: true, supportFetchAPI: true, stream: true, codeCache: true } },
]);

// One instance owns the library (one SQLite writer).
if (!app.requestSingleInstanceLock()) app.quit();

let services: Services | null = null;
let win: BrowserWindow | null = null;

function appRoot(): string {
  // Packaged: the resources folder holds python-runtime/ and resources/ (electron-builder.yml extraResources).
  return app.isPackaged ? process.resourcesPath : path.resolve(__dirname, '..', '..');
}

function hardenContents(contents: WebContents): void {
  contents.setWindowOpenHandler(({ url }) => {
    // Links to the web (docs, model pages) open in the user's browser, never in an Atelier window.
    if (/^https:\/\//.test(url)) void shell.openExternal(url);
    return { action: 'deny' };
  });
  contents.on('will-navigate', (event, url) => {
    if (!isAppUrl(url)) event.preventDefault();
  });
  contents.on('will-redirect', (event, url) => {
    if (!isAppUrl(url)) event.preventDefault();
  });
  contents.on('will-attach-webview', (event) => event.preventDefault());
}

function isTrustedSender(event: IpcMainInvokeEvent): boolean {
  const frame = event.senderFrame;
  return !!frame && frame === event.sender.mainFrame && isAppUrl(frame.url);
}

async function createWindow(): Promise<void> {
  win = new BrowserWindow({
    width: 1440,
    height: 900,
    minWidth: 960,
    minHeight: 600,
    backgroundColor: '#15161a',
    title: 'Atelier',
    show: false,
    webPreferences: {
      preload: path.join(__dirname, 'preload.cjs'),
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      experimentalFeatures: false,
      webviewTag: false,
      spellcheck: false,
    },
  });
  win.once('ready-to-show', () => win?.show());
  await win.loadURL(RENDERER_URL);
}

app.on('web-contents-created', (_e, contents) => hardenContents(contents));

app.whenReady().then(async () => {
  Menu.setApplicationMenu(process.platform === 'darwin' ? Menu.buildFromTemplate([{ role: 'appMenu' }, { role: 'editMenu' }, { role: 'windowMenu' }]) : null);
  session.defaultSession.setPermissionRequestHandler((_wc, _permission, callback) => callback(false));
  session.defaultSession.setPermissionCheckHandler(() => false);

  const dataDir = app.getPath('userData');
  const store = new Store({ name: SETTINGS_NAME });
  services = createServices({
    dataDir,
    appRoot: appRoot(),
    settingsBackend: storeBackend(store as unknown as { store: Record<string, unknown> }),
    shell: 'electron',
    version: __APP_VERSION__,
    pythonOverride: process.env.ATELIER_PYTHON,
    autoProvision: true,
    // The OpenAI key, encrypted by the OS keychain; OPENAI_API_KEY when none is stored.
    keyStore: encryptedFileKeyStore(path.join(dataDir, 'secrets', 'openai-key.bin'), safeStorage),
  });
  // dist/main/../renderer: inside app.asar when packaged, which Electron's fs reads transparently.
  registerAtelierProtocol(path.join(__dirname, '..', 'renderer'), services.history);

  ipcMain.handle('atelier:call', async (event, method: unknown, input: unknown) => {
    if (!isTrustedSender(event)) return { ok: false, error: { code: 'UNAUTHORIZED', message: 'Refused: the caller is not Atelier’s own page.' } };
    return services!.dispatch(method, input);
  });
  services.hub.subscribe((name, payload) => {
    for (const w of BrowserWindow.getAllWindows()) if (!w.isDestroyed()) w.webContents.send('atelier:event', name, payload);
  });

  await createWindow();
  void services.runtime.boot();
});

app.on('second-instance', () => {
  if (win) {
    if (win.isMinimized()) win.restore();
    win.focus();
  }
});

app.on('window-all-closed', () => app.quit());

let quitting = false;
app.on('before-quit', (event) => {
  if (quitting || !services) return;
  event.preventDefault();
  quitting = true;
  services.dispose().finally(() => app.quit());
});
