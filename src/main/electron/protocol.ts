/**
 * `atelier://app/…` serves the renderer and `atelier://files/…` serves library
 * images; nothing else. Which file a URL may serve is decided by
 * security.ts's atelierFileFor (inside its root: no `..`, no absolute paths,
 * no symlinks out), so a page cannot read arbitrary files.
 */
import { net, protocol } from 'electron';
import { pathToFileURL } from 'node:url';
import { CSP } from '../lib/csp';
import { atelierFileFor, type LibraryFiles } from './security';

export function registerAtelierProtocol(rendererDir: string, library: LibraryFiles): void {
  protocol.handle('atelier', async (request) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') return new Response('Method not allowed', { status: 405 });
    const file = atelierFileFor(request.url, rendererDir, library);
    if (!file) return new Response('Not found', { status: 404 });
    const res = await net.fetch(pathToFileURL(file).toString());
    const headers = new Headers(res.headers);
    headers.set('Content-Security-Policy', CSP);
    headers.set('X-Content-Type-Options', 'nosniff');
    return new Response(res.body, { status: res.status, headers });
  });
}
