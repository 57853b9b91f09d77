/**
 * The cloud backend: OpenAI's Images API through the official `openai` SDK, beside the local
 * worker. It turns a GenerateParams (backend 'cloud') into `images.generate` or, for canvas and
 * img2img requests, `images.edit` with the mask OpenAI expects (transparent = edit), retries what
 * is worth retrying (429 honouring retry-after, 5xx, dropped connections) and maps every failure to
 * a message a person can act on. It returns PNG bytes; the jobs service saves them, so a failure
 * at any point saves nothing.
 *
 * The key comes from a KeyStore per request and is never logged, stored in the history or
 * written into an image.
 */
import OpenAI, { toFile } from 'openai';
import type { CloudEstimate, CloudStatus, GenerateParams } from '../../../shared/contract';
import { cloudImagePrice, cloudModel, defaultQuality, monthStart, roundUsd, type CloudModel } from '../../../shared/cloud';
import { AtelierError } from '../../../shared/errors';
import { pngSize } from '../../lib/fsx';
import { rgbaPng } from '../../lib/png';
import { decodePngPixels } from '../../lib/thumbnail';
import type { KeyStore } from './keystore';

export interface CloudServiceOptions {
  keys: KeyStore;
  /** USD spent on cloud images since an ISO date (the history's sum). */
  spentSince: (iso: string) => number;
  budget: () => number;
  /** An OpenAI-compatible endpoint (tests); default: the SDK's (OPENAI_BASE_URL or api.openai.com). */
  baseURL?: string;
  /** Per request; image generation at high quality can take a minute. */
  timeoutMs?: number;
  /** Attempts for retryable failures (429, 5xx, dropped connections), the first included. */
  maxAttempts?: number;
  /** A retry-after longer than this is not waited out: the request fails with the wait in the message. */
  maxWaitMs?: number;
  now?: () => Date;
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  log?: (line: string) => void;
}

export interface CloudInputs {
  /** img2img / canvas: the image to edit (PNG, may have transparent areas). */
  image?: Buffer;
  /** White = repaint (Atelier's convention); turned into OpenAI's transparent-where-edited mask. */
  mask?: Buffer;
}

export interface CloudResult {
  images: Buffer[];
  revisedPrompt: string | null;
  costUsd: number;
  size: string;
  quality: string;
  attempts: number;
  timings: Record<string, number>;
}

const sleepFor = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(new AtelierError('CANCELLED', 'Cancelled.'));
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(new AtelierError('CANCELLED', 'Cancelled.'));
    };
    signal?.addEventListener('abort', onAbort, { once: true });
  });

export class CloudService {
  constructor(private opts: CloudServiceOptions) {}

  status(): CloudStatus {
    const k = this.opts.keys.get();
    return {
      hasKey: !!k,
      keySource: k?.source ?? null,
      canStoreKey: this.opts.keys.writable,
      keyHint: k ? `…${k.key.slice(-4)}` : null,
      spentThisMonthUsd: this.spentThisMonth(),
      budgetUsd: this.opts.budget(),
    };
  }

  setKey(key: string): CloudStatus {
    this.opts.keys.set(key.trim());
    return this.status();
  }

  clearKey(): CloudStatus {
    this.opts.keys.clear();
    return this.status();
  }

  spentThisMonth(): number {
    return roundUsd(this.opts.spentSince(monthStart(this.now())));
  }

  estimate(model: string, size: string, quality: string, n: number): CloudEstimate {
    const price = cloudImagePrice(model, size, quality);
    if (price === null) throw new AtelierError('BAD_REQUEST', `${model} is not an OpenAI image model Atelier knows.`);
    const costUsd = roundUsd(price * n);
    const spent = this.spentThisMonth();
    const budget = this.opts.budget();
    return { costUsd, spentThisMonthUsd: spent, budgetUsd: budget, overBudget: budget > 0 && spent + costUsd > budget + 1e-9 };
  }

  /** Refuse a request that would pass the monthly budget unless the user confirmed it. */
  checkBudget(p: GenerateParams): void {
    const c = p.cloud!;
    const e = this.estimate(p.modelId, c.size, c.quality, p.batch);
    if (e.overBudget && !c.overBudgetOk) {
      throw new AtelierError(
        'OVER_BUDGET',
        `This request (about $${e.costUsd.toFixed(3)}) would take this month's cloud spend to $${(e.spentThisMonthUsd + e.costUsd).toFixed(2)}, past your budget of $${e.budgetUsd.toFixed(2)}. Confirm to go on, or raise the budget in Settings.`,
      );
    }
  }

  async generate(p: GenerateParams, inputs: CloudInputs, run: { signal?: AbortSignal; onStatus?: (message: string) => void } = {}): Promise<CloudResult> {
    const m = cloudModel(p.modelId);
    if (!m || !p.cloud) throw new AtelierError('BAD_REQUEST', `${p.modelId} is not an OpenAI image model.`);
    const key = this.opts.keys.get();
    if (!key) {
      throw new AtelierError(
        'CLOUD_AUTH',
        this.opts.keys.writable ? 'No OpenAI API key: enter one in Settings → Cloud.' : 'No OpenAI API key: start Atelier with OPENAI_API_KEY set in the environment.',
      );
    }
    const client = new OpenAI({
      apiKey: key.key,
      baseURL: this.opts.baseURL,
      maxRetries: 0, // ours, below: it tells the user what it waits for and can be cancelled
      timeout: this.opts.timeoutMs ?? 180_000,
      logLevel: 'off',
    });
    const c = p.cloud;
    const quality = c.quality || defaultQuality(m);
    const dalle = m.id.startsWith('dall-e');
    const common = {
      model: m.id,
      prompt: p.prompt,
      n: p.batch,
      size: c.size as '1024x1024',
      ...(quality && quality !== 'auto' ? { quality: quality as 'medium' } : {}),
      // GPT Image models always answer in base64 and refuse response_format; DALL·E would send URLs.
      ...(dalle ? { response_format: 'b64_json' as const } : {}),
    };
    const edit = inputs.image ? prepareEdit(m, inputs) : null;
    const t0 = Date.now();
    const { response, attempts } = await this.withRetries(async () => {
      if (edit) {
        return client.images.edit(
          {
            ...common,
            image: await toFile(edit.image, 'image.png', { type: 'image/png' }),
            ...(edit.mask ? { mask: await toFile(edit.mask, 'mask.png', { type: 'image/png' }) } : {}),
          },
          { signal: run.signal },
        );
      }
      return client.images.generate({ ...common, ...(c.style ? { style: c.style as 'vivid' } : {}) }, { signal: run.signal });
    }, run);
    const requestMs = Date.now() - t0;
    const data = response.data ?? [];
    if (!data.length) throw new AtelierError('CLOUD_UNAVAILABLE', `OpenAI answered without an image (${m.label}). Nothing was charged to the history; try again.`);
    const images: Buffer[] = [];
    for (const d of data) {
      if (d.b64_json) images.push(Buffer.from(d.b64_json, 'base64'));
      else if (d.url) images.push(await this.download(d.url, run.signal));
      else throw new AtelierError('CLOUD_UNAVAILABLE', 'OpenAI answered with an empty image entry. Nothing was saved; try again.');
    }
    const sizes = images.map((img) => {
      try {
        return pngSize(img);
      } catch {
        throw new AtelierError('CLOUD_UNAVAILABLE', 'OpenAI sent an image that is not a PNG. Nothing was saved; try again.');
      }
    });
    const size = (response as { size?: string }).size ?? (c.size === 'auto' ? `${sizes[0].width}x${sizes[0].height}` : c.size);
    const usedQuality = (response as { quality?: string }).quality ?? quality;
    const price = cloudImagePrice(m.id, size, usedQuality) ?? cloudImagePrice(m.id, c.size, quality) ?? 0;
    return {
      images,
      revisedPrompt: data.find((d) => d.revised_prompt)?.revised_prompt ?? null,
      costUsd: roundUsd(price * images.length),
      size,
      quality: usedQuality,
      attempts,
      timings: { total_ms: Date.now() - t0, request_ms: requestMs },
    };
  }

  private async download(url: string, signal?: AbortSignal): Promise<Buffer> {
    const res = await fetch(url, { signal }).catch(() => null);
    if (!res?.ok) throw new AtelierError('CLOUD_UNAVAILABLE', 'The image OpenAI made could not be downloaded (its link expires after an hour). Nothing was saved; try again.');
    return Buffer.from(await res.arrayBuffer());
  }

  private async withRetries<T>(call: () => Promise<T>, run: { signal?: AbortSignal; onStatus?: (message: string) => void }): Promise<{ response: T; attempts: number }> {
    const max = this.opts.maxAttempts ?? 4;
    const maxWait = this.opts.maxWaitMs ?? 60_000;
    const sleep = this.opts.sleep ?? sleepFor;
    for (let attempt = 1; ; attempt++) {
      try {
        return { response: await call(), attempts: attempt };
      } catch (err) {
        if (run.signal?.aborted || err instanceof OpenAI.APIUserAbortError) throw new AtelierError('CANCELLED', 'Cancelled.');
        const mapped = mapError(err);
        if (!mapped.retry || attempt >= max) throw mapped.error;
        const wait = retryAfterMs(err) ?? Math.min(maxWait, 1000 * 2 ** (attempt - 1));
        if (wait > maxWait) throw mapped.error;
        const what = mapped.error.code === 'CLOUD_RATE_LIMITED' ? 'Rate limited by OpenAI' : 'OpenAI did not answer properly';
        run.onStatus?.(`${what}: trying again in ${Math.ceil(wait / 1000)} s (attempt ${attempt + 1} of ${max}).`);
        this.opts.log?.(`cloud: attempt ${attempt} failed (${mapped.error.code}: ${mapped.error.message}); retrying in ${wait} ms`);
        await sleep(wait, run.signal);
      }
    }
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }
}

/** OpenAI's headers first (retry-after-ms), then the standard retry-after (seconds or an HTTP date). */
export function retryAfterMs(err: unknown): number | null {
  const h = (err as { headers?: Headers | Record<string, string> | null })?.headers;
  if (!h) return null;
  const get = (k: string) => (typeof (h as Headers).get === 'function' ? (h as Headers).get(k) : ((h as Record<string, string>)[k] ?? null));
  const ms = Number(get('retry-after-ms'));
  if (get('retry-after-ms') && Number.isFinite(ms) && ms >= 0) return ms;
  const ra = get('retry-after');
  if (!ra) return null;
  const s = Number(ra);
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const at = Date.parse(ra);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : null;
}

/** Every SDK failure as a specific AtelierError, and whether trying again can help. */
export function mapError(err: unknown): { error: AtelierError; retry: boolean } {
  const msg = (e: { error?: unknown; message?: string }) => {
    const inner = (e.error as { message?: string } | undefined)?.message;
    const text = (inner ?? e.message ?? '').replace(/\s+/g, ' ').trim().slice(0, 400);
    return /[.!?]$/.test(text) || !text ? text : `${text}.`;
  };
  const code = (e: unknown) => String((e as { code?: unknown; error?: { code?: unknown } })?.code ?? (e as { error?: { code?: unknown } })?.error?.code ?? '');
  if (err instanceof AtelierError) return { error: err, retry: false };
  if (err instanceof OpenAI.APIConnectionTimeoutError) {
    // Not retried: the image may still be made (and billed) on OpenAI's side.
    return { error: new AtelierError('CLOUD_UNAVAILABLE', 'OpenAI did not answer in time. Nothing was saved; try again, or pick a lower quality.'), retry: false };
  }
  if (err instanceof OpenAI.APIConnectionError) {
    return { error: new AtelierError('CLOUD_UNAVAILABLE', 'Could not reach the OpenAI API: check the network connection (or use the local backend, which works offline).'), retry: true };
  }
  if (err instanceof OpenAI.AuthenticationError) {
    return { error: new AtelierError('CLOUD_AUTH', 'OpenAI refused the API key (401): check it in Settings → Cloud, or OPENAI_API_KEY.'), retry: false };
  }
  if (err instanceof OpenAI.PermissionDeniedError) {
    return { error: new AtelierError('CLOUD_AUTH', `OpenAI refused this key for this request (403): ${msg(err)}`), retry: false };
  }
  if (err instanceof OpenAI.NotFoundError) {
    return { error: new AtelierError('CLOUD_REFUSED', `The model is not available to this key (retired, or not enabled for the account): ${msg(err)}`), retry: false };
  }
  if (err instanceof OpenAI.RateLimitError) {
    if (/insufficient_quota|billing/.test(code(err))) {
      return { error: new AtelierError('CLOUD_RATE_LIMITED', `The OpenAI account is out of credit or over its spending limit: ${msg(err)}`), retry: false };
    }
    return { error: new AtelierError('CLOUD_RATE_LIMITED', `Rate limited by OpenAI (429) even after waiting: ${msg(err)} Try again in a minute.`), retry: true };
  }
  if (err instanceof OpenAI.BadRequestError || err instanceof OpenAI.UnprocessableEntityError) {
    if (/content_policy|moderation|safety/.test(code(err)) || /safety system|content policy/i.test(msg(err))) {
      return { error: new AtelierError('CLOUD_REFUSED', `OpenAI declined this prompt under its content policy: ${msg(err)} Nothing was saved or charged to the history.`), retry: false };
    }
    return { error: new AtelierError('CLOUD_REFUSED', `OpenAI refused the request (${(err as { status?: number }).status}): ${msg(err)}`), retry: false };
  }
  if (err instanceof OpenAI.InternalServerError) {
    return { error: new AtelierError('CLOUD_UNAVAILABLE', `OpenAI's servers failed (${(err as { status?: number }).status}) even after retrying: ${msg(err)} Try again later.`), retry: true };
  }
  if (err instanceof OpenAI.APIError) {
    return { error: new AtelierError('CLOUD_UNAVAILABLE', `OpenAI answered with an error (${err.status ?? 'no status'}): ${msg(err)}`), retry: false };
  }
  return { error: new AtelierError('INTERNAL', `The cloud request failed: ${(err as Error)?.message ?? String(err)}`), retry: false };
}

/**
 * The image and mask for images.edit. Atelier's mask is white where to repaint; OpenAI's is an
 * RGBA image, transparent where to edit, the same size as the image. With no mask, the image's own
 * transparent pixels (the canvas's empty area: outpainting) become the mask.
 */
export function prepareEdit(m: CloudModel, inputs: CloudInputs): { image: Buffer; mask: Buffer | null } {
  const image = inputs.image!;
  const img = decodePngPixels(image);
  if (!img) throw new AtelierError('BAD_REQUEST', 'The image to edit is not a PNG Atelier can read.');
  if (m.id === 'dall-e-2' && img.width !== img.height) {
    throw new AtelierError('BAD_REQUEST', `DALL·E 2 edits square images only; the frame is ${img.width}×${img.height}. Make the frame square or pick a GPT Image model.`);
  }
  const alpha = Buffer.alloc(img.width * img.height, 255);
  let transparent = 0;
  if (img.channels === 2 || img.channels === 4) {
    for (let i = 0; i < alpha.length; i++) {
      if (img.px[i * img.channels + img.channels - 1] < 255) {
        alpha[i] = 0;
        transparent++;
      }
    }
  }
  if (inputs.mask) {
    const mk = decodePngPixels(inputs.mask);
    if (!mk) throw new AtelierError('BAD_REQUEST', 'The mask is not a PNG Atelier can read.');
    if (mk.width !== img.width || mk.height !== img.height) throw new AtelierError('BAD_REQUEST', `The mask is ${mk.width}×${mk.height} but the image is ${img.width}×${img.height}.`);
    for (let i = 0; i < alpha.length; i++) {
      if (mk.px[i * mk.channels] >= 128) {
        if (alpha[i]) transparent++;
        alpha[i] = 0;
      }
    }
  }
  if (!transparent) return { image, mask: null }; // nothing marked: an edit of the whole image by the prompt
  const rgba = Buffer.alloc(img.width * img.height * 4);
  for (let i = 0; i < alpha.length; i++) rgba[i * 4 + 3] = alpha[i];
  return { image, mask: rgbaPng(img.width, img.height, rgba) };
}
