/**
 * The desktop shell's security policy, item by item from Electron's security
 * checklist, as plain functions with no Electron import: main.ts and
 * protocol.ts wire them to Electron, and tests/unit/electron-security.test.ts
 * checks them (and the wiring, with a stand-in Electron) in plain Node.
 */
import fs from 'node:fs';
import { resolveInside } from '../lib/fsx';

export const RENDERER_URL = 'atelier://app/index.html';

/** Atelier's own pages: `atelier://app/…`, nothing else (not `atelier://files`, not http). */
export function isAppUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === 'atelier:' && u.host === 'app';
  } catch {
    return false;
  }
}

/** window.open / target=_blank: never an Atelier window; https links go to the user's browser. */
export function windowOpenDecision(url: string): { action: 'deny'; openExternally: boolean } {
  let external = false;
  try {
    const u = new URL(url);
    external = u.protocol === 'https:' && !u.username && !u.password;
  } catch {
    external = false;
  }
  return { action: 'deny', openExternally: external };
}

/** will-navigate / will-redirect / will-frame-navigate: only within Atelier's own pages. */
export function blocksNavigation(url: string): boolean {
  return !isAppUrl(url);
}

/** Every permission (camera, microphone, notifications, geolocation, clipboard, …) is refused. */
export function permissionRequest(_permission: string): boolean {
  return false;
}

export interface IpcSender {
  senderFrame: { url: string } | null;
  sender: { mainFrame: unknown };
}

/** IPC calls are served only for the top frame of Atelier's own page. */
export function isTrustedSender(event: IpcSender): boolean {
  const frame = event.senderFrame;
  return !!frame && frame === event.sender.mainFrame && isAppUrl(frame.url);
}

export interface LibraryFiles {
  resolveDisplayFile(rel: string, size: number | null): string | null;
}

/**
 * The file an `atelier://` URL may serve, or null: `atelier://app/<path>` inside
 * the renderer folder, `atelier://files/<path>` inside the library (images only);
 * any other host, `..`, absolute paths, backslashes, NUL, symlinks that leave
 * the root and malformed percent-escapes are refused.
 */
export function atelierFileFor(requestUrl: string, rendererDir: string, library: LibraryFiles): string | null {
  let url: URL;
  let rel: string;
  try {
    url = new URL(requestUrl);
    if (url.protocol !== 'atelier:' || url.username || url.password || url.port) return null;
    rel = decodeURIComponent(url.pathname.replace(/^\//, ''));
  } catch {
    return null; // not a URL, or a malformed %-escape
  }
  if (url.host === 'app') {
    const file = resolveInside(rendererDir, rel || 'index.html');
    return file && fs.statSync(file).isFile() ? file : null;
  }
  if (url.host === 'files') return library.resolveDisplayFile(rel, Number(url.searchParams.get('w')) || null);
  return null;
}
