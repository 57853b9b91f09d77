/**
 * Prompt tools: templates, negative presets, style suffixes, a CLIP token
 * estimate and the blocked-terms check of shared machines.
 *
 * Plain functions over strings, for both backends (local Stable Diffusion with
 * its CLIP text encoder, and the cloud OpenAI Images API). Imported by main and
 * renderer; imports nothing.
 */

// ---------------------------------------------------------------- templates

export interface PromptTemplate {
  id: string;
  label: string;
  /** Contains {subject}, replaced by the user's text. */
  prompt: string;
  negative: string;
}

export const PROMPT_TEMPLATES: readonly PromptTemplate[] = [
  {
    id: 'product',
    label: 'Product photography',
    prompt: 'studio product photo of {subject}, softbox lighting, seamless white backdrop, soft shadow, 85mm, f/8, sharp focus, high detail, commercial photography',
    negative: 'blurry, out of focus, cluttered background, harsh shadows, dust, fingerprints, text, watermark, lowres, jpeg artifacts',
  },
  {
    id: 'concept-art',
    label: 'Concept art',
    prompt: 'concept art of {subject}, digital painting, dramatic lighting, atmospheric perspective, matte painting, epic composition, highly detailed, trending on artstation',
    negative: 'lowres, blurry, flat lighting, muddy colors, photograph, watermark, signature, text',
  },
  {
    id: 'character-portrait',
    label: 'Character portrait',
    prompt: 'portrait of {subject}, head and shoulders, detailed face, expressive eyes, soft rim light, shallow depth of field, 50mm, bokeh background, highly detailed skin texture',
    negative: 'deformed, disfigured, bad anatomy, poorly drawn face, asymmetric eyes, cross-eyed, extra fingers, mutated hands, blurry, lowres',
  },
  {
    id: 'landscape',
    label: 'Landscape',
    prompt: 'sweeping landscape of {subject}, golden hour, volumetric light, atmospheric haze, detailed foreground, epic scale, 24mm, ultra detailed, national geographic',
    negative: 'blurry, lowres, overexposed, washed out, flat lighting, tilted horizon, watermark, text, border',
  },
  {
    id: 'isometric-asset',
    label: 'Isometric game asset',
    prompt: 'isometric game asset of {subject}, 3d render, low poly, clean edges, soft ambient occlusion, vibrant colors, centered, plain background, game art',
    negative: 'perspective distortion, cropped, cluttered background, blurry, noisy, photo, realistic, text, watermark',
  },
  {
    id: 'logo',
    label: 'Logo / brand mark',
    prompt: 'minimalist vector logo of {subject}, flat design, simple geometric shapes, bold clean lines, two colors, centered on white background, brand mark, icon',
    negative: 'photo, realistic, 3d, gradient, shading, texture, clutter, too many details, text, letters, watermark, blurry',
  },
  {
    id: 'architecture',
    label: 'Architecture / interior',
    prompt: 'architectural photograph of {subject}, natural daylight, large windows, wide angle, 24mm, straight verticals, clean lines, realistic materials, interior design magazine, high detail',
    negative: 'distorted perspective, converging verticals, fisheye, cluttered, people, blurry, lowres, noise, watermark, text',
  },
  {
    id: 'anime',
    label: 'Anime illustration',
    prompt: 'anime illustration of {subject}, cel shading, clean lineart, vibrant colors, detailed eyes, key visual, masterpiece, best quality',
    negative: 'worst quality, low quality, lowres, bad anatomy, bad hands, extra digits, fewer digits, cropped, jpeg artifacts, 3d, realistic, signature, watermark',
  },
  {
    id: 'watercolor',
    label: 'Watercolor',
    prompt: 'watercolor painting of {subject}, soft washes, wet on wet, loose brushstrokes, pigment blooms, visible paper texture, muted palette, white background',
    negative: 'photo, realistic, 3d render, digital art, hard edges, harsh outlines, oversaturated, blurry, watermark, text',
  },
  {
    id: 'cinematic',
    label: 'Cinematic still',
    prompt: 'cinematic film still of {subject}, anamorphic lens, shallow depth of field, moody lighting, color graded, 35mm film grain, dramatic composition',
    negative: 'cartoon, illustration, painting, lowres, blurry, overexposed, oversaturated, watermark, text',
  },
];

/** Comma-separated segments, trimmed, empty ones dropped, joined with ", ". */
function tidySegments(text: string): string {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .join(', ');
}

/**
 * The template with {subject} replaced by the trimmed subject. An empty subject
 * removes the placeholder and the word that led to it ("photo of {subject}, x" → "photo, x").
 */
export function applyTemplate(t: PromptTemplate, subject: string): { prompt: string; negativePrompt: string } {
  const s = subject.trim().replace(/^[\s,]+|[\s,]+$/g, '');
  const filled = s
    ? t.prompt.replace(/\{subject\}/g, () => s)
    : t.prompt.replace(/(?:\s+(?:of|for|with|featuring|depicting|showing|an?|the))*\s*\{subject\}/gi, '');
  return { prompt: tidySegments(filled), negativePrompt: t.negative };
}

// ---------------------------------------------------------------- negative prompts

export const NEGATIVE_PRESETS: readonly { id: string; label: string; text: string }[] = [
  { id: 'quality', label: 'General quality', text: 'worst quality, low quality, lowres, blurry, jpeg artifacts, noise, out of focus' },
  { id: 'photo', label: 'Photo', text: 'cartoon, illustration, painting, drawing, anime, 3d render, cgi, plastic skin, overexposed, underexposed, oversaturated' },
  {
    id: 'anatomy',
    label: 'Anatomy',
    text: 'bad anatomy, bad proportions, deformed, disfigured, extra limbs, missing limbs, extra fingers, fused fingers, mutated hands, poorly drawn hands, poorly drawn face, long neck',
  },
  { id: 'text', label: 'Text / watermark', text: 'text, watermark, signature, logo, username, caption, letters, border, frame' },
  { id: 'illustration', label: 'Illustration', text: 'photo, photorealistic, 3d render, grainy, muddy colors, messy lines, sketch, unfinished' },
];

/** A term as compared: lowercase, single spaces, without A1111 weighting ("(Blurry:1.3)" → "blurry"). */
function termKey(term: string): string {
  return term
    .replace(/:\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)\s*(?=[)\]]|$)/g, '')
    .replace(/[()[\]]/g, '')
    .toLowerCase()
    .replace(/\s+/g, ' ')
    .trim();
}

/**
 * The negative prompt with the preset's comma-separated terms that are not in it
 * yet (case-insensitive, weights ignored) appended; the user's text is kept as written, first.
 */
export function mergeNegative(current: string, preset: string): string {
  const have = new Set(current.split(/[,\n]/).map(termKey).filter(Boolean));
  const add: string[] = [];
  for (const raw of preset.split(',')) {
    const term = raw.trim();
    const key = termKey(term);
    if (!key || have.has(key)) continue;
    have.add(key);
    add.push(term);
  }
  if (add.length === 0) return current;
  const base = current.replace(/[\s,]+$/, '').replace(/^[\s,]+/, '');
  return base ? `${base}, ${add.join(', ')}` : add.join(', ');
}

/**
 * Appends ", suffix" to the prompt. Idempotent: a prompt that already ends with the
 * suffix (as whole comma-separated segments; case, whitespace and trailing commas
 * ignored) is returned unchanged, and so is any prompt for an empty suffix.
 */
export function appendStyle(prompt: string, suffix: string): string {
  const s = tidySegments(suffix);
  if (!s) return prompt;
  const norm = (t: string) => tidySegments(t.toLowerCase().replace(/\s+/g, ' '));
  const p = norm(prompt);
  const ns = norm(s);
  if (p === ns || p.endsWith(`, ${ns}`)) return prompt;
  const base = prompt.replace(/[\s,]+$/, '').replace(/^[\s,]+/, '');
  return base ? `${base}, ${s}` : s;
}

// ---------------------------------------------------------------- CLIP tokens

/** Tokens of one CLIP window, without the start and end tokens (77 in all). */
export const CLIP_WINDOW = 75;

/** Words longer than 7 letters that CLIP's vocabulary holds as one token (the common ones in prompts). */
const SINGLE_TOKEN_WORDS = new Set(
  (
    'beautiful detailed details lighting photograph photography photographer cinematic background foreground character characters ' +
    'landscape landscapes illustration illustrations professional watercolor watercolour masterpiece realistic portrait portraits ' +
    'resolution painting paintings drawing drawings sculpture architecture interior exterior building buildings mountain mountains ' +
    'sunlight daylight midnight twilight shadows colorful colourful dramatic atmosphere composition intricate environment concept ' +
    'futuristic magical abstract underwater perspective graphic graphics gorgeous stunning wonderful handsome children standing ' +
    'sitting walking wearing holding looking smiling expression clothing creature princess warrior knight original official ' +
    'japanese american european medieval classic traditional contemporary festival lightning reflection reflections transparent ' +
    'gradient seamless commercial advertising bottle furniture kitchen bedroom bathroom apartment cathedral waterfall forest ocean ' +
    'island desert valley universe galaxy spaceship dinosaur elephant butterfly flowers cherry blossom garden autumn winter summer ' +
    'spring symmetry symmetrical geometric minimalist typography emblem branding company simple closeup headshot ' +
    'fantasy cyberpunk steampunk deformed watermark signature username duplicate distorted artifacts proportions anatomy ' +
    'overexposed underexposed saturated grainy lowres quality highres highly extremely incredibly ultra sharp focus studio ' +
    'soft natural golden volumetric ambient shallow depth field bokeh texture textures material materials surface fabric ' +
    'wooden leather marble crystal diamond silver metallic glowing shining floating flying burning dancing fighting'
  )
    .split(/\s+/)
    .filter((w) => w.length > 7),
);

const PRE_TOKEN = /'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/gu;

/** Estimated BPE tokens of one piece of text without A1111 syntax. */
function estimateTokens(text: string): number {
  let n = 0;
  for (const piece of text.toLowerCase().match(PRE_TOKEN) ?? []) {
    if (/^\p{L}+$/u.test(piece)) {
      const len = [...piece].length;
      n += len <= 7 || SINGLE_TOKEN_WORDS.has(piece) ? 1 : Math.ceil(len / 5);
    } else if (piece.startsWith("'") && piece.length <= 3 && /^'[a-z]+$/.test(piece)) {
      n += 1; // a contraction: 's 't 're 've 'm 'll 'd
    } else {
      n += [...piece].length; // a digit, or 1 per punctuation character
    }
  }
  return n;
}

/** The text A1111 encodes: without <lora:…> tags, weights or emphasis brackets. */
function stripA1111Syntax(text: string): string {
  return text
    .replace(/<\w+:[^<>]*>/g, ' ')
    .replace(/:\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)\s*\)/g, ')')
    .replace(/\\([()[\]])|[()[\]]/g, (_m, escaped: string | undefined) => escaped ?? ' ');
}

/**
 * An ESTIMATE of the CLIP tokens of a prompt, as A1111 counts them: 75 tokens per
 * window (77 with the start and end tokens), each window encoded separately; the
 * word BREAK ends the current window early; weights, emphasis brackets and
 * <lora:…> tags do not count. Words are pre-tokenized as CLIP does, but the BPE
 * merges are guessed (short and common words are 1 token, longer ones ~5 letters
 * per token): the exact count needs the model's own tokenizer. A1111's move of a
 * window's tail to the next one at a comma is not modelled.
 */
export function countClipTokens(text: string): { tokens: number; windows: number; perWindow: number[]; exact: false } {
  const perWindow: number[] = [];
  let current = 0;
  const segments = text.split(/\s*\bBREAK\b\s*/);
  segments.forEach((segment, i) => {
    if (i > 0) {
      perWindow.push(current); // BREAK: this window ends here, even when empty (as in A1111)
      current = 0;
    }
    let n = estimateTokens(stripA1111Syntax(segment));
    while (n > 0) {
      if (current === CLIP_WINDOW) {
        perWindow.push(current);
        current = 0;
      }
      const take = Math.min(n, CLIP_WINDOW - current);
      current += take;
      n -= take;
    }
  });
  if (current > 0 || perWindow.length === 0) perWindow.push(current);
  return { tokens: perWindow.reduce((a, b) => a + b, 0), windows: perWindow.length, perWindow, exact: false };
}

// ---------------------------------------------------------------- blocked terms

const LEET: Record<string, string> = { '0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '@': 'a', $: 's' };
const NO_SPACES = /[\p{Script=Han}\p{Script=Hiragana}\p{Script=Katakana}\p{Script=Thai}]/u;

interface Word {
  text: string;
  /** A run of single characters spelled apart ("n u d e", "n.u.d.e"), joined. */
  spaced: boolean;
}

/**
 * The words of a text in three views, for matching through evasions:
 * leetspeak read as letters; the same with punctuation inside a word dropped ("nu-de");
 * digits as separators ("1girl" → "girl"). Runs of single characters are joined in each.
 */
function wordViews(text: string): Word[][] {
  const base = text.normalize('NFKC').toLowerCase().replace(/\p{Cf}/gu, '');
  const leet = base.replace(/[013457@$]/g, (c) => LEET[c] ?? c);
  const joined = leet.replace(/(?<=[\p{L}\p{M}\p{N}])[^\s\p{L}\p{M}\p{N}]+(?=[\p{L}\p{M}\p{N}])/gu, '');
  return [words(leet, /[\p{L}\p{M}\p{N}]+/gu), words(joined, /[\p{L}\p{M}\p{N}]+/gu), words(base, /[\p{L}\p{M}]+/gu)];
}

function words(text: string, re: RegExp): Word[] {
  const out: Word[] = [];
  let run = '';
  const flush = () => {
    if (run) out.push({ text: run, spaced: [...run].length > 1 });
    run = '';
  };
  for (const w of text.match(re) ?? []) {
    if ([...w].length === 1) run += w;
    else {
      flush();
      out.push({ text: w, spaced: false });
    }
  }
  flush();
  return out;
}

function matchesView(text: Word[], term: Word[]): boolean {
  if (term.length === 0) return false;
  const compact = term.map((w) => w.text).join('');
  if (NO_SPACES.test(compact)) return text.map((w) => w.text).join('').includes(compact);
  for (let i = 0; i + term.length <= text.length; i++) {
    if (term.every((w, j) => text[i + j]!.text === w.text)) return true;
  }
  // Spelled apart: "a n u d e" is one run "anude"; the term may sit anywhere in it.
  return text.some((w) => w.spaced && w.text.includes(compact));
}

/**
 * The terms of a blocked list that the text contains, as written in the list, in
 * list order, each once. Case-insensitive and NFKC-normalized; whole words or whole
 * phrases only ("ass" is not in "class"), also when spelled apart ("n.u.d.e",
 * "n u d e", "n-u-d-e") or in leetspeak ("nud3", "@ss"). Blank terms are ignored.
 */
export function findBlockedTerms(text: string, terms: readonly string[]): string[] {
  const views = wordViews(text);
  const flat = text.normalize('NFKC').toLowerCase();
  const found: string[] = [];
  const seen = new Set<string>();
  for (const term of terms) {
    const key = term.normalize('NFKC').toLowerCase().trim();
    if (!key || seen.has(key)) continue;
    const termViews = wordViews(key);
    const hit = termViews.every((v) => v.length === 0)
      ? flat.includes(key) // no letters at all (an emoji, a symbol): a plain substring
      : // The digits-as-separators view of the text is read against the term's letters (leetspeak read).
        matchesView(views[0]!, termViews[0]!) || matchesView(views[1]!, termViews[1]!) || matchesView(views[2]!, termViews[0]!);
    if (hit) {
      seen.add(key);
      found.push(term);
    }
  }
  return found;
}

/** The blocked terms of a settings textarea: one per line or comma-separated, trimmed, blanks and duplicates (case-insensitive) dropped. */
export function parseBlockedTerms(text: string): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  for (const raw of text.split(/[\r\n,]+/)) {
    const term = raw.trim();
    const key = term.toLowerCase();
    if (!term || seen.has(key)) continue;
    seen.add(key);
    out.push(term);
  }
  return out;
}
