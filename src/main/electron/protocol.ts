/**
 * `atelier://app/…` serves the renderer and `atelier://files/…` serves library
 * images; nothing else. Paths are resolved inside their root (no `..`, no
 * absolute paths, no symlinks out), so a page cannot read arbitrary files.
 */
import { net, protocol } from 'electron';
import { pathToFileURL } from 'node:url';
import type { HistoryStore } from '../services/history/store';
import { resolveInside } from '../lib/fsx';
import { CSP } from '../lib/csp';

export const RENDERER_URL = 'atelier://app/index.html';

export function isAppUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return u.protocol === 'atelier:' && u.host === 'app';
  } catch {
    return false;
  }
}

export function registerAtelierProtocol(rendererDir: string, history: HistoryStore): void {
  protocol.handle('atelier', async (request) => {
    const url = new URL(request.url);
    const rel = decodeURIComponent(url.pathname.replace(/^\//, ''));
    const file = url.host === 'app' ? resolveInside(rendererDir, rel || 'index.html') : url.host === 'files' ? history.resolveDisplayFile(rel, Number(url.searchParams.get('w')) || null) : null;
    if (!file) return new Response('Not found', { status: 404 });
    const res = await net.fetch(pathToFileURL(file).toString());
    const headers = new Headers(res.headers);
    headers.set('Content-Security-Policy', CSP);
    headers.set('X-Content-Type-Options', 'nosniff');
    return new Response(res.body, { status: res.status, headers });
  });
}
