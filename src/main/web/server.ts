/**
 * The web mode's server: the renderer as static files, the contract over a
 * WebSocket, and library images under /files/. Loopback only by default.
 *
 * Local web UIs get attacked through DNS rebinding and cross-site requests to
 * localhost, so every request must (1) name one of our hosts in `Host`, (2) on
 * WebSocket upgrades come from our own `Origin`, and (3) carry the token,
 * which the first visit trades for an HttpOnly, SameSite=Strict cookie.
 */
import { timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { WebSocketServer, type WebSocket } from 'ws';
import { CSP } from '../lib/csp';
import { resolveInside } from '../lib/fsx';
import type { Services } from '../services';

export interface WebServerOptions {
  services: Pick<Services, 'dispatch' | 'hub' | 'history'>;
  rendererDir: string;
  token: string;
  host?: string;
  port?: number;
  log?: (line: string) => void;
}

export interface WebServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

const COOKIE = 'atelier_token';
// Room for one canvas asset (64 MB of base64) plus its envelope; everything else is tiny.
export const MAX_FRAME_BYTES = 72 * 1024 * 1024;



const MIME: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.webp': 'image/webp',
  '.json': 'application/json',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
};

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

function cookieToken(req: http.IncomingMessage): string | null {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [k, ...v] = part.trim().split('=');
    if (k === COOKIE) return decodeURIComponent(v.join('='));
  }
  return null;
}

/** The shortest token accepted: a guessable token on a server others can reach is no lock at all. */
export const MIN_TOKEN_LENGTH = 16;

export function isLoopbackHost(host: string): boolean {
  return ['127.0.0.1', 'localhost', '::1'].includes(host);
}

export async function startWebServer(opts: WebServerOptions): Promise<WebServer> {
  const host = opts.host ?? '127.0.0.1';
  const log = opts.log ?? (() => {});
  if (typeof opts.token !== 'string' || opts.token.length < MIN_TOKEN_LENGTH) {
    throw new Error(`The web mode needs a token of at least ${MIN_TOKEN_LENGTH} characters (ATELIER_TOKEN); leave it unset for a random one.`);
  }
  let port = opts.port ?? 0;
  const bracket = (h: string) => (h.includes(':') ? `[${h}]` : h);
  const allowedHosts = () => {
    const names = ['127.0.0.1', 'localhost', '[::1]'];
    if (host === '0.0.0.0' || host === '::') {
      // Listening on every interface (asked for with --host): this machine's own addresses, and no names,
      // so a DNS-rebinding name still gets 421.
      for (const list of Object.values(os.networkInterfaces())) for (const a of list ?? []) names.push(bracket(a.address.split('%')[0]));
    } else if (!names.includes(bracket(host))) names.push(bracket(host));
    return new Set(names.map((n) => `${n.toLowerCase()}:${port}`));
  };
  let hosts = allowedHosts();

  const authorized = (req: http.IncomingMessage, url: URL): boolean => {
    const given = cookieToken(req) ?? url.searchParams.get('token') ?? (req.headers.authorization ?? '').replace(/^Bearer /, '');
    return !!given && safeEqual(given, opts.token);
  };

  const refuse = (res: http.ServerResponse, status: number, message: string) => {
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
    res.end(message);
  };

  const securityHeaders = {
    'Content-Security-Policy': CSP,
    'X-Content-Type-Options': 'nosniff',
    'X-Frame-Options': 'DENY',
    'Referrer-Policy': 'no-referrer',
    'Cross-Origin-Opener-Policy': 'same-origin',
    'Cross-Origin-Resource-Policy': 'same-origin',
  };

  const sendFile = (res: http.ServerResponse, file: string, cache: string) => {
    const type = MIME[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
    const stat = fs.statSync(file);
    res.writeHead(200, { ...securityHeaders, 'Content-Type': type, 'Content-Length': stat.size, 'Cache-Control': cache });
    fs.createReadStream(file).pipe(res);
  };

  const server = http.createServer((req, res) => {
    try {
      if (!req.headers.host || !hosts.has(req.headers.host.toLowerCase())) return refuse(res, 421, 'Unknown host.');
      const url = new URL(req.url ?? '/', `http://${req.headers.host}`);
      if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(res, 405, 'Method not allowed.');
      if (!authorized(req, url)) return refuse(res, 401, 'Atelier needs the token from the address it printed at start.');
      if (url.searchParams.has('token')) {
        // Trade the token in the address for a cookie, and drop it from the address bar and history.
        url.searchParams.delete('token');
        res.writeHead(303, {
          'Set-Cookie': `${COOKIE}=${encodeURIComponent(opts.token)}; HttpOnly; SameSite=Strict; Path=/`,
          Location: url.pathname + url.search,
          'Cache-Control': 'no-store',
        });
        return res.end();
      }
      if (url.pathname.startsWith('/files/')) {
        const w = Number(url.searchParams.get('w')) || null;
        const file = opts.services.history.resolveDisplayFile(decodeURIComponent(url.pathname.slice('/files/'.length)), w);
        if (!file) return refuse(res, 404, 'No such file in the library.');
        return sendFile(res, file, 'private, max-age=31536000, immutable');
      }
      const rel = url.pathname === '/' ? 'index.html' : decodeURIComponent(url.pathname.slice(1));
      const file = resolveInside(opts.rendererDir, rel);
      if (file && fs.statSync(file).isFile()) return sendFile(res, file, rel === 'index.html' ? 'no-store' : 'no-cache');
      // Client-side routes fall back to the app shell.
      const index = path.join(opts.rendererDir, 'index.html');
      if (!path.extname(rel) && fs.existsSync(index)) return sendFile(res, index, 'no-store');
      return refuse(res, 404, 'Not found.');
    } catch (err) {
      log(`web: ${(err as Error).stack}`);
      if (!res.headersSent) refuse(res, 500, 'Internal error.');
      else res.destroy();
    }
  });

  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME_BYTES });
  const sockets = new Set<WebSocket>();

  server.on('upgrade', (req, socket, head) => {
    const deny = (status: number, text: string) => {
      socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    const hostHeader = (req.headers.host ?? '').toLowerCase();
    if (!hosts.has(hostHeader)) return deny(421, 'Misdirected Request');
    const url = new URL(req.url ?? '/', `http://${hostHeader}`);
    if (url.pathname !== '/ws') return deny(404, 'Not Found');
    const origin = req.headers.origin;
    // Browsers always send Origin on a WebSocket; it must be this very server. Non-browser clients
    // (the CLI, tests) send none and are still held to the token.
    if (origin !== undefined && !hosts.has(origin.replace(/^http:\/\//, '').toLowerCase())) return deny(403, 'Forbidden');
    if (!authorized(req, url)) return deny(401, 'Unauthorized');
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  wss.on('connection', (ws) => {
    sockets.add(ws);
    const unsubscribe = opts.services.hub.subscribe((name, payload) => {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ t: 'event', name, payload }));
    });
    ws.on('message', async (data, isBinary) => {
      let msg: { t?: unknown; id?: unknown; method?: unknown; input?: unknown };
      try {
        if (isBinary) throw new Error('binary');
        msg = JSON.parse(data.toString());
        if (typeof msg !== 'object' || msg === null || msg.t !== 'call' || typeof msg.id !== 'number') throw new Error('shape');
      } catch {
        ws.send(JSON.stringify({ t: 'reply', id: null, ok: false, error: { code: 'BAD_REQUEST', message: 'Malformed frame: expected {"t":"call","id":<number>,"method":…,"input":…}.' } }));
        return;
      }
      let reply: Awaited<ReturnType<typeof opts.services.dispatch>>;
      try {
        reply = await opts.services.dispatch(msg.method, msg.input);
      } catch (err) {
        // The dispatcher answers every failure itself; this is the last guard so a caller always gets a reply.
        log(`web: dispatch threw: ${(err as Error)?.stack ?? String(err)}`);
        reply = { ok: false, error: { code: 'INTERNAL', message: 'Atelier could not handle this request.' } };
      }
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify({ t: 'reply', id: msg.id, ...reply }));
    });
    ws.on('close', () => {
      unsubscribe();
      sockets.delete(ws);
    });
    ws.on('error', () => ws.terminate());
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  port = (server.address() as AddressInfo).port;
  hosts = allowedHosts();
  const shownHost = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shownHost}:${port}/?token=${opts.token}`,
    port,
    close: async () => {
      for (const ws of sockets) ws.terminate();
      wss.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
