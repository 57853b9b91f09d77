/**
 * The cloud backend's models, the options each accepts, and their prices: one table, read by the
 * main side (validation, cost, budget) and the renderer (which options to show). OpenAI changes
 * these; keep them here and nowhere else.
 *
 * Prices are USD per output image from OpenAI's pricing page (2026-11). GPT Image models also bill
 * the prompt's text tokens (a fraction of a cent per request), which the table leaves out. For
 * budgeting, `auto` size and quality are priced at their most expensive choice.
 */

export type CloudModelId = 'gpt-image-1' | 'gpt-image-1-mini' | 'gpt-image-1.5' | 'gpt-image-2' | 'dall-e-3' | 'dall-e-2';

export interface CloudModel {
  id: CloudModelId;
  label: string;
  sizes: readonly string[];
  /** Empty: the model takes no quality option. */
  qualities: readonly string[];
  /** Empty: the model takes no style option (only dall-e-3 has one). */
  styles: readonly string[];
  /** Most images per request (`n`). */
  maxN: number;
  /** Takes `images.edit` with a mask (inpainting from the canvas). */
  edit: boolean;
  /** USD per image, by quality ('' when the model has none), then by size. */
  price: Record<string, Record<string, number>>;
  note?: string;
}

const gptSizes = ['1024x1024', '1536x1024', '1024x1536', 'auto'] as const;
const gptPrice = (sq: [number, number, number], wide: [number, number, number]) => ({
  low: { '1024x1024': sq[0], '1536x1024': wide[0], '1024x1536': wide[0] },
  medium: { '1024x1024': sq[1], '1536x1024': wide[1], '1024x1536': wide[1] },
  high: { '1024x1024': sq[2], '1536x1024': wide[2], '1024x1536': wide[2] },
});

export const CLOUD_MODELS: readonly CloudModel[] = [
  {
    id: 'gpt-image-1',
    label: 'GPT Image 1',
    sizes: gptSizes,
    qualities: ['low', 'medium', 'high', 'auto'],
    styles: [],
    maxN: 10,
    edit: true,
    price: gptPrice([0.011, 0.042, 0.167], [0.016, 0.063, 0.25]),
  },
  {
    id: 'gpt-image-1-mini',
    label: 'GPT Image 1 mini',
    sizes: gptSizes,
    qualities: ['low', 'medium', 'high', 'auto'],
    styles: [],
    maxN: 10,
    edit: true,
    price: gptPrice([0.005, 0.011, 0.036], [0.006, 0.015, 0.052]),
  },
  {
    id: 'gpt-image-1.5',
    label: 'GPT Image 1.5',
    sizes: gptSizes,
    qualities: ['low', 'medium', 'high', 'auto'],
    styles: [],
    maxN: 10,
    edit: true,
    price: gptPrice([0.009, 0.034, 0.133], [0.013, 0.05, 0.2]),
  },
  {
    id: 'gpt-image-2',
    label: 'GPT Image 2',
    sizes: gptSizes,
    qualities: ['low', 'medium', 'high', 'auto'],
    styles: [],
    maxN: 10,
    edit: true,
    price: gptPrice([0.009, 0.034, 0.133], [0.013, 0.05, 0.2]),
    note: 'priced as GPT Image 1.5 until its own prices are in this table',
  },
  {
    id: 'dall-e-3',
    label: 'DALL·E 3',
    sizes: ['1024x1024', '1792x1024', '1024x1792'],
    qualities: ['standard', 'hd'],
    styles: ['vivid', 'natural'],
    maxN: 1,
    edit: false,
    price: {
      standard: { '1024x1024': 0.04, '1792x1024': 0.08, '1024x1792': 0.08 },
      hd: { '1024x1024': 0.08, '1792x1024': 0.12, '1024x1792': 0.12 },
    },
  },
  {
    id: 'dall-e-2',
    label: 'DALL·E 2',
    sizes: ['256x256', '512x512', '1024x1024'],
    qualities: [],
    styles: [],
    maxN: 10,
    edit: true,
    price: { '': { '256x256': 0.016, '512x512': 0.018, '1024x1024': 0.02 } },
  },
];

export function cloudModel(id: string): CloudModel | undefined {
  return CLOUD_MODELS.find((m) => m.id === id);
}

export function isCloudModel(id: string): boolean {
  return !!cloudModel(id);
}

/** The quality a model uses when none is chosen. */
export function defaultQuality(m: CloudModel): string {
  return m.qualities.includes('medium') ? 'medium' : (m.qualities[0] ?? '');
}

/** USD for one image at this size and quality (`auto` at its most expensive); null for an unknown model. */
export function cloudImagePrice(modelId: string, size: string, quality = ''): number | null {
  const m = cloudModel(modelId);
  if (!m) return null;
  const q = quality || defaultQuality(m);
  const tiers = q === 'auto' || !(q in m.price) ? Object.values(m.price) : [m.price[q]];
  const prices = tiers.flatMap((t) => (size === 'auto' || !(size in t) ? Object.values(t) : [t[size]]));
  return prices.length ? Math.max(...prices) : null;
}

/** Rounded to 1/1000 of a cent so sums of stored costs stay exact enough. */
export function roundUsd(v: number): number {
  return Math.round(v * 1e5) / 1e5;
}

export function formatUsd(v: number): string {
  return v < 0.1 && v > 0 ? `$${v.toFixed(3)}` : `$${v.toFixed(2)}`;
}

/** The first instant of the month of `now`, in UTC, as an ISO string (the budget's period). */
export function monthStart(now: Date): string {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1)).toISOString();
}
