/**
 * Pure helpers of the Train page (no DOM, no store): formatting, the loss
 * curve's downsampling, how dropped files are packed into upload batches, and
 * how the server's field errors are mapped back onto the form.
 */
import type { SkippedFile, TrainingState } from '../../../shared/contract';

/** "45 s", "3 min 20 s", "2 h 05 min". */
export function formatDuration(sec: number | null | undefined): string {
  if (sec == null || !Number.isFinite(sec) || sec < 0) return '—';
  const s = Math.round(sec);
  if (s < 60) return `${s} s`;
  if (s < 3600) {
    const m = Math.floor(s / 60);
    const r = s % 60;
    return r ? `${m} min ${r} s` : `${m} min`;
  }
  const h = Math.floor(s / 3600);
  const m = Math.round((s % 3600) / 60);
  return `${h} h ${String(m).padStart(2, '0')} min`;
}

/** A loss or learning rate, readable at any scale. */
export function formatNumber(v: number | null | undefined, digits = 4): string {
  if (v == null || !Number.isFinite(v)) return '—';
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a < 1e-3 || a >= 1e5) return v.toExponential(2).replace('e+', 'e');
  return Number(v.toPrecision(digits)).toString();
}

export function formatRate(v: number | null | undefined): string {
  if (v == null || !Number.isFinite(v) || v <= 0) return '—';
  return v >= 1 ? `${v.toFixed(2)} it/s` : `${(1 / v).toFixed(1)} s/it`;
}

export const STATE_LABEL: Record<TrainingState, string> = {
  queued: 'Queued',
  running: 'Running',
  paused: 'Paused',
  interrupted: 'Interrupted',
  done: 'Done',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

/** What the job's buttons may do in each state (the server's rules). */
export function jobActions(state: TrainingState): { pause: boolean; resume: boolean; cancel: boolean; delete: boolean } {
  const active = state === 'running' || state === 'queued';
  return {
    pause: active,
    resume: state === 'paused' || state === 'interrupted' || state === 'failed',
    cancel: active || state === 'paused' || state === 'interrupted' || state === 'failed',
    delete: !active,
  };
}

export type LossPoint = [step: number, loss: number];

/**
 * At most `max` points for drawing: consecutive points are bucketed by index
 * and each bucket becomes its mean step, mean loss, and its min and max (the
 * chart draws the mean and a faint min-max band, so spikes stay visible).
 */
export function downsample(points: readonly LossPoint[], max = 1000): { step: number; mean: number; min: number; max: number }[] {
  const finite = points.filter((p) => Number.isFinite(p[0]) && Number.isFinite(p[1]));
  const n = finite.length;
  if (n <= max) return finite.map(([step, loss]) => ({ step, mean: loss, min: loss, max: loss }));
  const out: { step: number; mean: number; min: number; max: number }[] = [];
  const size = n / max;
  for (let b = 0; b < max; b++) {
    const from = Math.floor(b * size);
    const to = Math.min(n, Math.floor((b + 1) * size));
    if (to <= from) continue;
    let sStep = 0;
    let sLoss = 0;
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = from; i < to; i++) {
      const [step, loss] = finite[i];
      sStep += step;
      sLoss += loss;
      if (loss < lo) lo = loss;
      if (loss > hi) hi = loss;
    }
    const k = to - from;
    out.push({ step: sStep / k, mean: sLoss / k, min: lo, max: hi });
  }
  return out;
}

/** Exponential moving average of a series (the smoothed curve over the noisy per-step loss). */
export function ema(values: readonly number[], points: number): number[] {
  const alpha = 2 / (Math.max(1, points) + 1);
  const out: number[] = [];
  let acc = values[0] ?? 0;
  for (const v of values) {
    acc = acc + alpha * (v - acc);
    out.push(acc);
  }
  return out;
}

/** Around `count` round tick values covering [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 4): number[] {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return [];
  if (hi <= lo) return [lo];
  const raw = (hi - lo) / Math.max(1, count);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const ticks: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

// ------------------------------------------------------------------ uploads

/** The worker's per-file limit (contract: 40 MB of bytes, 56 MB of base64). */
export const MAX_UPLOAD_FILE_BYTES = 40 * 1024 * 1024;
/** One `datasets.addFiles` call: the contract's 200 files, and bytes kept well under the socket's frame limit. */
export const MAX_BATCH_FILES = 200;
export const MAX_BATCH_BYTES = 40 * 1024 * 1024;

export function stemOf(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? name;
  return base.replace(/\.[^.]*$/, '');
}

export interface UploadPlan<F> {
  /** Batches of files; an image and its `.txt` caption always travel in the same batch. */
  batches: F[][];
  /** Captions with no image among the files (the caller may match them to images already in the dataset). */
  orphanCaptions: F[];
  /** Refused before sending, with the reason. */
  skipped: SkippedFile[];
}

/** Packs dropped files into upload batches, grouping each image with the `.txt` caption of the same stem. */
export function planUpload<F extends { name: string; size: number }>(files: readonly F[], limits = { files: MAX_BATCH_FILES, bytes: MAX_BATCH_BYTES, fileBytes: MAX_UPLOAD_FILE_BYTES }): UploadPlan<F> {
  const skipped: SkippedFile[] = [];
  const groups = new Map<string, { images: F[]; caption: F | null }>();
  const group = (stem: string) => {
    const key = stem.toLowerCase();
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { images: [], caption: null }));
    return g;
  };
  for (const f of files) {
    if (f.name.length > 255) {
      skipped.push({ file: f.name, reason: 'the file name is longer than 255 characters' });
    } else if (/\.txt$/i.test(f.name)) {
      if (f.size > 1024 * 1024) skipped.push({ file: f.name, reason: `${(f.size / 1e6).toFixed(1)} MB: too large for a caption` });
      else group(stemOf(f.name)).caption = f;
    } else if (f.size === 0) {
      skipped.push({ file: f.name, reason: 'the file is empty (0 bytes)' });
    } else if (f.size > limits.fileBytes) {
      skipped.push({ file: f.name, reason: `${Math.round(f.size / 1e6)} MB: larger than ${Math.round(limits.fileBytes / 1e6)} MB` });
    } else {
      group(stemOf(f.name)).images.push(f);
    }
  }
  const batches: F[][] = [];
  const orphanCaptions: F[] = [];
  let cur: F[] = [];
  let bytes = 0;
  for (const g of groups.values()) {
    if (!g.images.length) {
      if (g.caption) orphanCaptions.push(g.caption);
      continue;
    }
    const unit = g.caption ? [...g.images, g.caption] : g.images;
    const unitBytes = unit.reduce((a, f) => a + f.size, 0);
    if (cur.length && (cur.length + unit.length > limits.files || bytes + unitBytes > limits.bytes)) {
      batches.push(cur);
      cur = [];
      bytes = 0;
    }
    cur.push(...unit);
    bytes += unitBytes;
  }
  if (cur.length) batches.push(cur);
  return { batches, orphanCaptions, skipped };
}

// ------------------------------------------------------------ server errors

/**
 * The dispatcher's BAD_REQUEST message ("Invalid training.start request:
 * config.steps: must be…; name: is empty…") as one message per form field.
 * Paths under `config.` map to the config key; what names no field is `form`.
 */
export function fieldErrorsFrom(message: string): Record<string, string> {
  const out: Record<string, string> = {};
  const m = /^Invalid [\w.]+ request: (.*?)\.?$/s.exec(message);
  if (!m) return { form: message };
  for (const part of m[1].split('; ')) {
    const i = part.indexOf(': ');
    if (i < 0) {
      out.form ??= part;
      continue;
    }
    const path = part.slice(0, i).split('.');
    const key = path[0] === 'config' && path.length > 1 ? path[1] : path[0] === 'input' ? 'form' : path[0];
    out[key] ??= part.slice(i + 2);
  }
  return out;
}

/** A file-system-safe LoRA name from a dataset's name (what `training.start` accepts). */
export function loraNameFrom(datasetName: string): string {
  const s = datasetName
    .replace(/[\\/:*?"<>|\u0000-\u001f]+/g, ' ')
    .trim()
    .replace(/\s+/g, '-')
    .slice(0, 100);
  return s || 'my-lora';
}
