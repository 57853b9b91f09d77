/**
 * Batch modes of the generate panel, as pure functions (no store, no DOM):
 * one prompt, one prompt per line, or a prompt matrix where every `{a|b|c}`
 * group is expanded into all combinations.
 */

export type BatchMode = 'single' | 'lines' | 'matrix';
export const BATCH_MODES: { mode: BatchMode; label: string }[] = [
  { mode: 'single', label: 'Single prompt' },
  { mode: 'lines', label: 'One prompt per line' },
  { mode: 'matrix', label: 'Prompt matrix' },
];

/** The most jobs one submission may queue (the contract's `jobs.submitMany` limit). */
export const MAX_BATCH_JOBS = 500;

export interface BatchPlan {
  /** The prompts to queue, in order (empty when there is an error). */
  prompts: string[];
  /** How many jobs the prompt makes, even past the cap (so the message can say how many). */
  count: number;
  /** Why nothing can be queued, or null. */
  error: string | null;
}

const fmt = (n: number) => n.toLocaleString('en-US');

/** The non-empty lines of a text, trimmed. */
export function promptLines(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
}

/** `{a|b|c}` groups. Braces without a `|` stay literal text (some prompt styles use `{word}` for emphasis). */
const GROUP = /\{([^{}]*\|[^{}]*)\}/g;

/** A prompt split into literal text and option groups. */
export function matrixParts(text: string): (string | string[])[] {
  const parts: (string | string[])[] = [];
  let last = 0;
  for (const m of text.matchAll(GROUP)) {
    parts.push(text.slice(last, m.index));
    parts.push(m[1].split('|').map((o) => o.trim()));
    last = m.index + m[0].length;
  }
  parts.push(text.slice(last));
  return parts;
}

/** How many prompts a matrix makes (Infinity-safe: stops counting past `cap`). */
export function matrixCount(text: string, cap = Number.MAX_SAFE_INTEGER): number {
  let n = 1;
  for (const p of matrixParts(text)) {
    if (typeof p !== 'string') n *= p.length;
    if (n > cap) return n;
  }
  return n;
}

/** Tidy what an empty option leaves behind: doubled spaces, a space before a comma, stray commas at the ends. */
export function tidyPrompt(s: string): string {
  return s
    .replace(/[ \t]{2,}/g, ' ')
    .replace(/[ \t]+,/g, ',')
    .replace(/,(\s*,)+/g, ',')
    .replace(/^[\s,]+|[\s,]+$/g, '');
}

/** Every combination, the first group varying slowest: `a {red|blue} {circle|square}` → red circle, red square, blue circle, blue square. */
export function expandMatrix(text: string, cap = MAX_BATCH_JOBS): string[] {
  if (matrixCount(text, cap) > cap) throw new Error(`The matrix makes more than ${fmt(cap)} prompts.`);
  let out = [''];
  for (const p of matrixParts(text)) {
    if (typeof p === 'string') out = out.map((s) => s + p);
    else out = out.flatMap((s) => p.map((o) => s + o));
  }
  return out.map(tidyPrompt);
}

/** What a submission in this mode would queue. */
export function planBatch(mode: BatchMode, text: string): BatchPlan {
  if (mode === 'single') return { prompts: text.trim() ? [text] : [], count: text.trim() ? 1 : 0, error: null };
  if (mode === 'lines') {
    const lines = promptLines(text);
    if (!lines.length) return { prompts: [], count: 0, error: 'is empty: write one prompt per line' };
    if (lines.length > MAX_BATCH_JOBS) return { prompts: [], count: lines.length, error: `has ${fmt(lines.length)} lines: at most ${fmt(MAX_BATCH_JOBS)} jobs can be queued at once` };
    return { prompts: lines, count: lines.length, error: null };
  }
  if (!text.trim()) return { prompts: [], count: 0, error: 'is empty: describe the image, with {a|b} groups to combine' };
  const count = matrixCount(text, MAX_BATCH_JOBS);
  if (count > MAX_BATCH_JOBS) {
    const exact = matrixCount(text);
    const n = Number.isFinite(exact) && exact <= Number.MAX_SAFE_INTEGER ? fmt(exact) : 'too many';
    return { prompts: [], count: exact, error: `makes ${n} combinations: at most ${fmt(MAX_BATCH_JOBS)} jobs can be queued at once; remove some options` };
  }
  const prompts = expandMatrix(text).filter(Boolean);
  if (!prompts.length) return { prompts: [], count: 0, error: 'makes only empty prompts' };
  return { prompts, count: prompts.length, error: null };
}

/** "4 jobs will be queued", or the problem. */
export function planSummary(plan: BatchPlan, imagesPerJob = 1): string {
  if (plan.error) return `The prompt ${plan.error}.`;
  const jobs = `${fmt(plan.count)} ${plan.count === 1 ? 'job' : 'jobs'} will be queued`;
  return imagesPerJob > 1 ? `${jobs} (${fmt(plan.count * imagesPerJob)} images)` : jobs;
}
