/**
 * An OpenAI-compatible Images API for the tests: the real `openai` SDK talks to it over HTTP.
 * It records every request (headers, JSON body, multipart fields and files), answers with real
 * PNGs of the requested size, and plays scripted failures first: 401, 429 with retry-after, 500,
 * content-policy refusals, hangs. `GET /__requests` and `POST /__script` let a Playwright test
 * (in another process) read the log and script failures.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { solidPng } from '../src/main/lib/png';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  json: Record<string, unknown> | null;
  /** multipart: text fields */
  fields: Record<string, string>;
  /** multipart: files by field name */
  files: Record<string, { filename: string; type: string; data: Buffer }>;
  raw: Buffer;
}

export interface Scripted {
  status?: number;
  body?: unknown;
  headers?: Record<string, string>;
  /** Never answer (the client's timeout must fire). */
  hang?: boolean;
}

export class FakeOpenAI {
  requests: RecordedRequest[] = [];
  script: Scripted[] = [];
  private server: http.Server | null = null;
  private hanging: http.ServerResponse[] = [];
  url = '';

  async start(): Promise<string> {
    this.server = http.createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
    return this.url;
  }

  async close(): Promise<void> {
    for (const r of this.hanging) r.destroy();
    this.server?.closeAllConnections();
    await new Promise((r) => this.server?.close(r));
  }

  reset(): void {
    this.requests = [];
    this.script = [];
  }

  /** Image requests only (not the test's own /__ calls). */
  get imageRequests(): RecordedRequest[] {
    return this.requests.filter((r) => r.path.startsWith('/v1/images/'));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://x');
    if (url.pathname === '/__requests') return send(res, 200, this.requests.map((r) => ({ ...r, raw: undefined, files: Object.fromEntries(Object.entries(r.files).map(([k, f]) => [k, { filename: f.filename, type: f.type, bytes: f.data.length, base64: f.data.toString('base64') }])) })));
    if (url.pathname === '/__script') {
      this.script.push(...(JSON.parse(raw.toString() || '[]') as Scripted[]));
      return send(res, 200, { queued: this.script.length });
    }
    if (url.pathname === '/__reset') {
      this.reset();
      return send(res, 200, {});
    }
    const type = req.headers['content-type'] ?? '';
    const rec: RecordedRequest = { method: req.method ?? '', path: url.pathname, headers: req.headers, json: null, fields: {}, files: {}, raw };
    if (type.includes('application/json')) rec.json = JSON.parse(raw.toString());
    else if (type.includes('multipart/form-data')) Object.assign(rec, parseMultipart(raw, /boundary=(?:"([^"]+)"|([^;]+))/.exec(type)?.slice(1).find(Boolean) ?? ''));
    this.requests.push(rec);

    const next = this.script.shift();
    if (next?.hang) {
      this.hanging.push(res);
      return;
    }
    if (next) return send(res, next.status ?? 500, next.body ?? { error: { message: 'scripted failure', type: 'server_error', code: null } }, next.headers);

    const p = rec.json ?? rec.fields;
    const model = String(p.model ?? 'dall-e-2');
    const n = Number(p.n ?? 1);
    const size = String(p.size ?? '1024x1024');
    const [w, h] = size === 'auto' ? [1024, 1024] : size.split('x').map(Number);
    const prompt = String(p.prompt ?? '');
    let seed = 0;
    for (const ch of prompt) seed = (seed * 31 + ch.charCodeAt(0)) >>> 0;
    const data = Array.from({ length: n }, (_, i) => {
      const png = solidPng(w, h, [(seed + i * 40) % 256, (seed >> 8) % 256, (seed >> 16) % 256]);
      return { b64_json: png.toString('base64'), ...(model === 'dall-e-3' ? { revised_prompt: `A detailed rendering of ${prompt}` } : {}) };
    });
    const gpt = model.startsWith('gpt-image');
    send(res, 200, {
      created: 1764000000,
      data,
      ...(gpt ? { size: size === 'auto' ? '1024x1024' : size, quality: p.quality && p.quality !== 'auto' ? p.quality : 'high', output_format: 'png', usage: { input_tokens: 20, output_tokens: 4160, total_tokens: 4180 } } : {}),
    });
  }
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function parseMultipart(raw: Buffer, boundary: string): Pick<RecordedRequest, 'fields' | 'files'> {
  const fields: Record<string, string> = {};
  const files: RecordedRequest['files'] = {};
  const delim = Buffer.from(`--${boundary}`);
  let at = raw.indexOf(delim);
  while (at >= 0) {
    const start = at + delim.length;
    if (raw.subarray(start, start + 2).toString() === '--') break;
    const next = raw.indexOf(delim, start);
    if (next < 0) break;
    const part = raw.subarray(start + 2, next - 2); // skip CRLF after the delimiter and before the next
    const headEnd = part.indexOf('\r\n\r\n');
    const head = part.subarray(0, headEnd).toString();
    const body = part.subarray(headEnd + 4);
    const name = /name="([^"]*)"/.exec(head)?.[1] ?? '';
    const filename = /filename="([^"]*)"/.exec(head)?.[1];
    if (filename !== undefined) files[name.replace(/\[\]$/, '')] = { filename, type: /content-type:\s*(\S+)/i.exec(head)?.[1] ?? '', data: Buffer.from(body) };
    else fields[name] = body.toString();
    at = next;
  }
  return { fields, files };
}
