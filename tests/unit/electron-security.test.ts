/**
 * Electron's security checklist, item by item. The Electron binary cannot run here, so:
 *  - the policy (security.ts) is tested as plain functions, the atelier:// file resolution
 *    against a real library on disk with path tricks;
 *  - the shell (main.ts, protocol.ts) is loaded against a stand-in `electron` module that
 *    records what the shell asks of Electron, and each handler is driven like Electron would;
 *  - static checks hold every window, now and later, to the same settings.
 * Figures are printed at the end.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CSP } from '../../src/main/lib/csp';
import { atelierFileFor, blocksNavigation, isAppUrl, isTrustedSender, permissionRequest, windowOpenDecision } from '../../src/main/electron/security';
import { HistoryStore } from '../../src/main/services/history/store';
import { makePng, tmpDir } from '../helpers';

const ROOT = path.resolve(__dirname, '..', '..');
const tally = { tried: 0, refused: 0, allowed: 0 };
let staticChecks = 0;
function expectRefused(result: unknown) {
  tally.tried++;
  expect(result).toBeNull();
  tally.refused++;
}

// ----------------------------------------------------------------------- the stand-in Electron

type Listener = (...args: unknown[]) => unknown;
const rec = vi.hoisted(() => ({
  schemes: [] as unknown[],
  appListeners: new Map<string, Listener[]>(),
  windows: [] as { options: Record<string, unknown>; url?: string }[],
  ipc: new Map<string, Listener>(),
  protocolHandler: null as null | ((req: Request) => Promise<Response>),
  permissionRequest: null as null | Listener,
  permissionCheck: null as null | Listener,
  opened: [] as string[],
  dispatched: [] as unknown[],
  ready: null as null | (() => void),
}));

vi.mock('electron', () => {
  class FakeContents {
    listeners = new Map<string, Listener>();
    openHandler: Listener | null = null;
    mainFrame = { url: 'atelier://app/index.html' };
    setWindowOpenHandler(h: Listener) {
      this.openHandler = h;
    }
    on(name: string, l: Listener) {
      this.listeners.set(name, l);
      return this;
    }
    send() {}
  }
  class BrowserWindow {
    webContents = new FakeContents();
    constructor(public options: Record<string, unknown>) {
      rec.windows.push({ options });
    }
    once() {}
    isDestroyed() {
      return false;
    }
    async loadURL(url: string) {
      rec.windows[rec.windows.length - 1].url = url;
    }
    static getAllWindows() {
      return [];
    }
  }
  const app = {
    isPackaged: false,
    requestSingleInstanceLock: () => true,
    quit: () => {},
    getPath: () => tmpDirSync(),
    on(name: string, l: Listener) {
      rec.appListeners.set(name, [...(rec.appListeners.get(name) ?? []), l]);
    },
    whenReady: () => new Promise<void>((resolve) => (rec.ready = resolve)),
  };
  function tmpDirSync() {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { mkdtempSync } = require('node:fs') as typeof import('node:fs');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { tmpdir } = require('node:os') as typeof import('node:os');
    return mkdtempSync(`${tmpdir()}/atelier-electron-`);
  }
  return {
    app,
    BrowserWindow,
    ipcMain: { handle: (channel: string, l: Listener) => rec.ipc.set(channel, l) },
    Menu: { setApplicationMenu: () => {}, buildFromTemplate: () => ({}) },
    protocol: {
      registerSchemesAsPrivileged: (s: unknown[]) => rec.schemes.push(...s),
      handle: (_scheme: string, h: (req: Request) => Promise<Response>) => (rec.protocolHandler = h),
    },
    net: {
      fetch: async (url: string) => new Response(fs.readFileSync(new URL(url)), { status: 200, headers: { 'Content-Type': 'application/octet-stream' } }),
    },
    safeStorage: { isEncryptionAvailable: () => false, encryptString: () => Buffer.alloc(0), decryptString: () => '' },
    session: {
      defaultSession: {
        setPermissionRequestHandler: (h: Listener) => (rec.permissionRequest = h),
        setPermissionCheckHandler: (h: Listener) => (rec.permissionCheck = h),
      },
    },
    shell: { openExternal: async (url: string) => void rec.opened.push(url) },
    webUtils: { getPathForFile: () => '' },
    contextBridge: { exposeInMainWorld: () => {} },
    ipcRenderer: { invoke: async () => ({}), on: () => {}, removeListener: () => {} },
  };
});

vi.mock('electron-store', () => ({
  default: class {
    store: Record<string, unknown> = {};
  },
}));

// The services are tested elsewhere; here a stand-in records what the shell hands them.
vi.mock('../../src/main/services', () => ({
  createServices: () => ({
    dispatch: async (method: unknown, input: unknown) => {
      rec.dispatched.push([method, input]);
      return { ok: true, result: 'served' };
    },
    hub: { subscribe: () => () => {} },
    history: { resolveDisplayFile: () => null },
    runtime: { boot: async () => {} },
    dispose: async () => {},
  }),
}));

// ----------------------------------------------------------------------- fixtures

let library: HistoryStore;
let dataDir: string;
let rendererDir: string;
const imageRel = 'images/2026/ok.png';
const outside = tmpDir('atelier-sec-outside-');

beforeAll(() => {
  dataDir = tmpDir('atelier-sec-lib-');
  library = new HistoryStore({ dir: dataDir });
  fs.mkdirSync(path.join(dataDir, 'images', '2026'), { recursive: true });
  fs.writeFileSync(path.join(dataDir, imageRel), makePng(8, 8));
  fs.writeFileSync(path.join(outside, 'secret.png'), makePng(4, 4));
  fs.writeFileSync(path.join(outside, 'passwd'), 'root:x:0:0');
  // Symlinks placed inside the library and the renderer that point out of them.
  fs.symlinkSync(path.join(outside, 'secret.png'), path.join(dataDir, 'images', '2026', 'link.png'));
  fs.symlinkSync(outside, path.join(dataDir, 'images', 'escape'));
  rendererDir = tmpDir('atelier-sec-renderer-');
  fs.writeFileSync(path.join(rendererDir, 'index.html'), '<!doctype html><title>Atelier</title>');
  fs.mkdirSync(path.join(rendererDir, 'assets'));
  fs.writeFileSync(path.join(rendererDir, 'assets', 'app.js'), 'console.log(1)');
  fs.symlinkSync(path.join(outside, 'passwd'), path.join(rendererDir, 'assets', 'passwd.js'));
});

afterAll(() => {
  library?.close();
  console.log(`electron-security: ${tally.tried + tally.allowed} inputs tried (${tally.tried} hostile: ${tally.refused} refused; ${tally.allowed} legitimate: served), ${staticChecks} static source checks passed`);
});

// ----------------------------------------------------------------------- the policy

describe('atelier:// serves only files inside their root', () => {
  it('serves the renderer and library images', () => {
    expect(atelierFileFor('atelier://app/index.html', rendererDir, library)).toBe(fs.realpathSync(path.join(rendererDir, 'index.html')));
    expect(atelierFileFor('atelier://app/', rendererDir, library)).toBe(fs.realpathSync(path.join(rendererDir, 'index.html')));
    expect(atelierFileFor('atelier://app/assets/app.js', rendererDir, library)).toBe(fs.realpathSync(path.join(rendererDir, 'assets', 'app.js')));
    expect(atelierFileFor(`atelier://files/${imageRel}`, rendererDir, library)).toBe(fs.realpathSync(path.join(dataDir, imageRel)));
    tally.allowed += 4;
  });

  const secret = '/etc/passwd';
  const tricks = [
    // dot-dot, plain and encoded once, twice, in mixed case, with backslashes and overlong forms
    'atelier://files/images/../../../../etc/passwd',
    'atelier://files/images/..%2F..%2F..%2Fetc%2Fpasswd',
    'atelier://files/images/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
    'atelier://files/images/%2E%2E%2F%2E%2E%2Fsecret.png',
    'atelier://files/images/%252e%252e%252f%252e%252e%252fsecret.png',
    'atelier://files/images/..%5c..%5c..%5csecret.png',
    'atelier://files/images\\..\\..\\secret.png',
    'atelier://files/images/%c0%ae%c0%ae/secret.png',
    'atelier://files/images//2026/ok.png',
    // absolute paths, drive letters, UNC
    `atelier://files/${secret}`,
    `atelier://files/%2F${secret.slice(1)}`,
    `atelier://files/${encodeURIComponent(path.join(outside, 'secret.png'))}`,
    'atelier://files/C:%5CWindows%5Cwin.ini',
    'atelier://files/%5C%5Cserver%5Cshare%5Cx.png',
    // NUL bytes and malformed escapes
    'atelier://files/images/2026/ok.png%00.png',
    'atelier://files/images/2026/ok%ZZ.png',
    'atelier://files/images/2026/%E0%A4%A.png',
    // symlinks inside the library that leave it
    'atelier://files/images/2026/link.png',
    'atelier://files/images/escape/secret.png',
    // files outside the library's image folders, or not images
    'atelier://files/atelier.db',
    'atelier://files/images/2026/ok.png.txt',
    'atelier://files/settings.json',
    // the renderer root, the same tricks
    'atelier://app/../../etc/passwd',
    'atelier://app/..%2F..%2Fetc%2Fpasswd',
    'atelier://app/assets/passwd.js',
    'atelier://app/assets',
    `atelier://app/${encodeURIComponent(secret)}`,
    // other hosts, credentials, ports, other schemes
    'atelier://evil/index.html',
    'atelier://user:pass@files/images/2026/ok.png',
    'atelier://files:8080/images/2026/ok.png',
    'file:///etc/passwd',
    `https://files/${imageRel}`,
    'not a url',
  ];
  it.each(tricks)('refuses %s', (url) => {
    expectRefused(atelierFileFor(url, rendererDir, library));
  });
});

describe('navigation, new windows, permissions and IPC senders', () => {
  it('only atelier://app is Atelier', () => {
    for (const url of ['atelier://app/index.html', 'atelier://app/x/y']) expect(isAppUrl(url)).toBe(true);
    for (const url of ['atelier://files/images/a.png', 'http://127.0.0.1/', 'https://evil.example/', 'file:///etc/passwd', 'javascript:alert(1)', 'data:text/html,hi', 'atelier://app.evil.com/', '']) {
      tally.tried++;
      expect(isAppUrl(url)).toBe(false);
      expect(blocksNavigation(url)).toBe(true);
      tally.refused++;
    }
  });

  it('denies every new window; only credential-free https links go to the browser', () => {
    expect(windowOpenDecision('https://huggingface.co/docs')).toEqual({ action: 'deny', openExternally: true });
    for (const url of ['http://example.com/', 'file:///etc/passwd', 'javascript:alert(1)', 'smb://server/share', 'atelier://app/index.html', 'https://user:pw@example.com/', 'ms-msdt:/id', 'not a url']) {
      tally.tried++;
      expect(windowOpenDecision(url)).toEqual({ action: 'deny', openExternally: false });
      tally.refused++;
    }
  });

  it('refuses every permission', () => {
    for (const p of ['media', 'geolocation', 'notifications', 'midi', 'midiSysex', 'pointerLock', 'fullscreen', 'openExternal', 'clipboard-read', 'clipboard-sanitized-write', 'hid', 'serial', 'usb', 'idle-detection', 'display-capture', 'unknown']) {
      tally.tried++;
      expect(permissionRequest(p)).toBe(false);
      tally.refused++;
    }
  });

  it('serves IPC only to the top frame of Atelier’s own page', () => {
    const main = { url: 'atelier://app/index.html' };
    expect(isTrustedSender({ senderFrame: main, sender: { mainFrame: main } })).toBe(true);
    const cases = [
      { senderFrame: null, sender: { mainFrame: main } },
      { senderFrame: { url: 'atelier://app/index.html' }, sender: { mainFrame: main } }, // a sub-frame, even of our page
      { senderFrame: { url: 'https://evil.example/' }, sender: { mainFrame: { url: 'https://evil.example/' } } },
      { senderFrame: { url: 'atelier://files/images/a.png' }, sender: { mainFrame: { url: 'atelier://files/images/a.png' } } },
      { senderFrame: { url: 'file:///tmp/x.html' }, sender: { mainFrame: { url: 'file:///tmp/x.html' } } },
    ];
    for (const c of cases) {
      tally.tried++;
      // The same frame object as the main frame where the case means "the top frame".
      const event = c.senderFrame && c.senderFrame.url !== 'atelier://app/index.html' ? { ...c, sender: { mainFrame: c.senderFrame } } : c;
      expect(isTrustedSender(event)).toBe(false);
      tally.refused++;
    }
  });
});

// ----------------------------------------------------------------------- the shell, wired

describe('the Electron shell (main.ts) against a stand-in Electron', () => {
  beforeAll(async () => {
    vi.stubGlobal('__APP_VERSION__', 'test');
    await import('../../src/main/electron/main');
    rec.ready!();
    await new Promise((r) => setTimeout(r, 50));
  });

  it('opens its window with the checklist’s webPreferences and loads only its own page', () => {
    expect(rec.windows).toHaveLength(1);
    const prefs = rec.windows[0].options.webPreferences as Record<string, unknown>;
    expect(prefs).toMatchObject({
      contextIsolation: true,
      sandbox: true,
      nodeIntegration: false,
      nodeIntegrationInWorker: false,
      nodeIntegrationInSubFrames: false,
      webSecurity: true,
      allowRunningInsecureContent: false,
      experimentalFeatures: false,
      webviewTag: false,
      navigateOnDragDrop: false,
      disableBlinkFeatures: 'Auxclick',
    });
    expect(String(prefs.preload)).toMatch(/preload\.cjs$/);
    expect(rec.windows[0].url).toBe('atelier://app/index.html');
    expect(rec.schemes).toEqual([expect.objectContaining({ scheme: 'atelier', privileges: expect.objectContaining({ standard: true, secure: true }) })]);
  });

  it('hardens every web contents created, now or later: no new windows, no navigation away, no webviews', () => {
    const created = rec.appListeners.get('web-contents-created') ?? [];
    expect(created).toHaveLength(1);
    const contents = new (class {
      listeners = new Map<string, Listener>();
      openHandler: Listener | null = null;
      setWindowOpenHandler(h: Listener) {
        this.openHandler = h;
      }
      on(name: string, l: Listener) {
        this.listeners.set(name, l);
      }
    })();
    created[0]({}, contents);
    expect(contents.openHandler!({ url: 'https://example.com/page' })).toEqual({ action: 'deny' });
    expect(contents.openHandler!({ url: 'file:///etc/passwd' })).toEqual({ action: 'deny' });
    expect(rec.opened).toEqual(['https://example.com/page']);
    const prevented = (name: string, ...args: unknown[]) => {
      let stopped = false;
      const event = { preventDefault: () => (stopped = true), url: args[0] };
      contents.listeners.get(name)!(event, ...args);
      return stopped;
    };
    for (const name of ['will-navigate', 'will-redirect', 'will-frame-navigate']) {
      tally.tried += 2;
      expect(prevented(name, 'https://evil.example/')).toBe(true);
      expect(prevented(name, 'file:///etc/passwd')).toBe(true);
      tally.refused += 2;
      expect(prevented(name, 'atelier://app/index.html')).toBe(false);
    }
    expect(prevented('will-attach-webview')).toBe(true);
  });

  it('denies permission requests and checks', () => {
    let granted: boolean | null = null;
    rec.permissionRequest!({}, 'media', (ok: boolean) => (granted = ok));
    expect(granted).toBe(false);
    expect(rec.permissionCheck!({}, 'notifications')).toBe(false);
  });

  it('answers IPC only for its own top frame', async () => {
    const handler = rec.ipc.get('atelier:call')!;
    const main = { url: 'atelier://app/index.html' };
    expect(await handler({ senderFrame: main, sender: { mainFrame: main } }, 'history.list', {})).toEqual({ ok: true, result: 'served' });
    const evil = { url: 'https://evil.example/' };
    const refused = (await handler({ senderFrame: evil, sender: { mainFrame: evil } }, 'settings.update', { modelDirs: ['/'] })) as { ok: boolean; error: { code: string } };
    expect(refused).toMatchObject({ ok: false, error: { code: 'UNAUTHORIZED' } });
    expect(rec.dispatched).toEqual([['history.list', {}]]);
  });

  it('the protocol refuses other methods and paths outside its roots, and serves with the CSP', async () => {
    const h = rec.protocolHandler!;
    expect((await h(new Request('atelier://files/images/x.png', { method: 'POST', body: 'x' }))).status).toBe(405);
    for (const url of ['atelier://files/../../etc/passwd', 'atelier://app/..%2F..%2Fetc%2Fpasswd', 'atelier://evil/x', 'atelier://files/images/%E0%A4%A.png']) {
      tally.tried++;
      expect((await h(new Request(url))).status).toBe(404);
      tally.refused++;
    }
  });
});

// ----------------------------------------------------------------------- static checks

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : /\.(ts|tsx|html|mjs|cjs|js)$/.test(e.name) ? [p] : [];
  });
}

describe('static checks over src/', () => {
  const files = sourceFiles(path.join(ROOT, 'src')).map((f) => ({ f: path.relative(ROOT, f), text: fs.readFileSync(f, 'utf8') }));

  it('every BrowserWindow, now or added later, spells out the checklist', () => {
    const calls = files.flatMap(({ f, text }) => [...text.matchAll(/new BrowserWindow\(/g)].map((m) => ({ f, body: text.slice(m.index, text.indexOf('\n  });', m.index)) })));
    expect(calls.length).toBeGreaterThan(0);
    for (const { f, body } of calls) {
      for (const setting of ['contextIsolation: true', 'sandbox: true', 'nodeIntegration: false', 'nodeIntegrationInWorker: false', 'nodeIntegrationInSubFrames: false', 'webSecurity: true', 'allowRunningInsecureContent: false', 'webviewTag: false']) {
        expect(body, `${f}: a BrowserWindow without ${setting}`).toContain(setting);
      }
    }
  });

  it('nothing turns a protection off, evaluates strings or loads remote code', () => {
    const forbidden: [RegExp, string][] = [
      [/nodeIntegration\w*:\s*true/, 'Node integration'],
      [/contextIsolation:\s*false/, 'contextIsolation off'],
      [/sandbox:\s*false/, 'sandbox off'],
      [/webSecurity:\s*false/, 'webSecurity off'],
      [/allowRunningInsecureContent:\s*true/, 'insecure content'],
      [/webviewTag:\s*true|<webview/, 'webviews'],
      [/enableRemoteModule|@electron\/remote/, 'the remote module'],
      [/unsafe-eval|unsafe-inline/, 'an unsafe CSP source'],
      [/(^|[^.\w])eval\(|new Function\(/, 'string evaluation'],
      [/dangerouslySetInnerHTML|\.innerHTML\s*=/, 'raw HTML injection'],
      [/<script[^>]+src=["']https?:|import\(["']https?:/, 'remote scripts'],
      [/loadURL\((?!RENDERER_URL)/, 'loading a page other than Atelier’s own'],
    ];
    for (const { f, text } of files) {
      if (f.endsWith('security.ts') || f.endsWith('electronegativity.mjs')) continue;
      for (const [re, what] of forbidden) {
        staticChecks++;
        expect(re.test(text), `${f}: ${what}`).toBe(false);
      }
    }
  });

  it('one strict CSP: no eval, no inline script, nothing remote; the page’s meta tag says the same', () => {
    const directives = Object.fromEntries(CSP.split(';').map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k, v]));
    expect(directives['default-src']).toEqual(["'self'"]);
    expect(directives['script-src']).toEqual(["'self'"]);
    expect(directives['object-src']).toEqual(["'none'"]);
    expect(directives['base-uri']).toEqual(["'none'"]);
    expect(directives['frame-ancestors']).toEqual(["'none'"]);
    for (const v of Object.values(directives).flat()) expect(v).not.toMatch(/^https?:|^\*$|unsafe/);
    const html = fs.readFileSync(path.join(ROOT, 'src', 'renderer', 'index.html'), 'utf8');
    const meta = /http-equiv="Content-Security-Policy" content="([^"]+)"/.exec(html)?.[1];
    // A meta CSP cannot carry frame-ancestors; everything else must match the served header.
    expect(meta).toBe(CSP.split('; ').filter((d) => !d.startsWith('frame-ancestors')).join('; '));
  });
});
