import { describe, expect, it } from 'vitest';
import {
  appendStyle,
  applyTemplate,
  CLIP_WINDOW,
  countClipTokens,
  findBlockedTerms,
  mergeNegative,
  NEGATIVE_PRESETS,
  parseBlockedTerms,
  PROMPT_TEMPLATES,
} from '../../src/shared/prompts';

const template = (id: string) => {
  const t = PROMPT_TEMPLATES.find((x) => x.id === id);
  if (!t) throw new Error(`no template ${id}`);
  return t;
};

describe('prompt templates', () => {
  it('cover the usual subjects, each with a {subject}, a negative and a unique id', () => {
    const labels = PROMPT_TEMPLATES.map((t) => t.label.toLowerCase()).join(' | ');
    for (const word of ['product', 'concept art', 'portrait', 'landscape', 'isometric', 'logo', 'architecture', 'anime', 'watercolor']) {
      expect(labels).toContain(word);
    }
    expect(new Set(PROMPT_TEMPLATES.map((t) => t.id)).size).toBe(PROMPT_TEMPLATES.length);
    for (const t of PROMPT_TEMPLATES) {
      expect(t.prompt, t.id).toContain('{subject}');
      expect(t.negative.trim(), t.id).not.toBe('');
      expect(t.negative, t.id).not.toContain('{subject}');
    }
  });

  it('puts the trimmed subject in the placeholder and returns the negative', () => {
    const t = template('product');
    const r = applyTemplate(t, '  a red sneaker \n');
    expect(r.prompt).toMatch(/^studio product photo of a red sneaker, softbox lighting, /);
    expect(r.prompt).not.toContain('{subject}');
    expect(r.negativePrompt).toBe(t.negative);
    // "$&" in a subject is text, not a replacement pattern.
    expect(applyTemplate(t, 'a $& sign').prompt).toContain('of a $& sign,');
  });

  it('an empty subject leaves a readable prompt, without "of ," or stray commas', () => {
    for (const t of PROMPT_TEMPLATES) {
      for (const subject of ['', '   ', ' , ']) {
        const { prompt } = applyTemplate(t, subject);
        expect(prompt, t.id).not.toContain('{subject}');
        expect(prompt, t.id).not.toMatch(/\bof\s*,|,\s*,|^\s*,|,\s*$|\s{2}|\s,/);
        expect(prompt, t.id).toBe(prompt.trim());
      }
    }
    expect(applyTemplate(template('product'), '').prompt).toMatch(/^studio product photo, softbox lighting, /);
    expect(applyTemplate({ id: 'x', label: 'x', prompt: '{subject}, oil painting, for {subject}', negative: '' }, '').prompt).toBe('oil painting');
  });

  it('a subject with trailing commas does not make ",,"', () => {
    expect(applyTemplate(template('watercolor'), 'a fox, in snow,, ').prompt).toMatch(/^watercolor painting of a fox, in snow, soft washes/);
  });
});

describe('negative prompts', () => {
  it('has the presets, each a comma-separated list', () => {
    const ids = NEGATIVE_PRESETS.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    expect(NEGATIVE_PRESETS.length).toBeGreaterThanOrEqual(5);
    for (const p of NEGATIVE_PRESETS) expect(p.text.split(',').every((t) => t.trim().length > 0), p.id).toBe(true);
    expect(NEGATIVE_PRESETS.some((p) => /watermark/.test(p.text))).toBe(true);
  });

  it('adds only the missing terms, after the user\'s, case-insensitively', () => {
    expect(mergeNegative('Blurry, ugly', 'blurry, lowres, UGLY, text')).toBe('Blurry, ugly, lowres, text');
    expect(mergeNegative('', 'blurry, lowres')).toBe('blurry, lowres');
    expect(mergeNegative('   ', ' blurry ,lowres ,')).toBe('blurry, lowres');
    expect(mergeNegative('blurry, ', 'text')).toBe('blurry, text');
  });

  it('is idempotent, ignores weights and duplicates inside the preset', () => {
    const once = mergeNegative('cartoon', NEGATIVE_PRESETS[0]!.text);
    expect(mergeNegative(once, NEGATIVE_PRESETS[0]!.text)).toBe(once);
    expect(mergeNegative('(worst quality:1.4), low  quality', 'worst quality, low quality, text, Text')).toBe('(worst quality:1.4), low  quality, text');
    expect(mergeNegative('blurry', 'blurry')).toBe('blurry');
  });
});

describe('appendStyle', () => {
  it('appends ", suffix"', () => {
    expect(appendStyle('a cat', 'oil painting')).toBe('a cat, oil painting');
    expect(appendStyle('a cat, ', ' oil painting ')).toBe('a cat, oil painting');
    expect(appendStyle('a cat,,', 'oil painting')).toBe('a cat, oil painting');
  });

  it('is idempotent, ignoring case, whitespace and trailing commas', () => {
    const once = appendStyle('a cat', 'oil painting, impasto');
    expect(appendStyle(once, 'oil painting, impasto')).toBe(once);
    expect(appendStyle('a cat, Oil  Painting ,', 'oil painting')).toBe('a cat, Oil  Painting ,');
    expect(appendStyle('oil painting', 'Oil painting')).toBe('oil painting');
    expect(appendStyle('a cat,oil painting,impasto', 'oil painting, impasto')).toBe('a cat,oil painting,impasto');
  });

  it('matches whole segments only', () => {
    expect(appendStyle('a cat, by a painting', 'painting')).toBe('a cat, by a painting, painting');
  });

  it('empty suffix or prompt: no leading comma, no ",,"', () => {
    expect(appendStyle('a cat', '')).toBe('a cat');
    expect(appendStyle('a cat', ' , ')).toBe('a cat');
    expect(appendStyle('', 'oil painting')).toBe('oil painting');
    expect(appendStyle(' , ', 'oil painting')).toBe('oil painting');
    expect(appendStyle('a cat', ',oil painting,, impasto,')).toBe('a cat, oil painting, impasto');
  });
});

describe('countClipTokens', () => {
  it('empty text: no tokens, one window, and always an estimate', () => {
    expect(countClipTokens('')).toEqual({ tokens: 0, windows: 1, perWindow: [0], exact: false });
    expect(countClipTokens('   ')).toEqual({ tokens: 0, windows: 1, perWindow: [0], exact: false });
  });

  it('counts words, punctuation, digits and contractions like CLIP\'s pre-tokenizer', () => {
    expect(countClipTokens('a cat').tokens).toBe(2);
    expect(countClipTokens('a cat, on a mat.').tokens).toBe(7);
    expect(countClipTokens('1990').tokens).toBe(4);
    expect(countClipTokens('wow...').tokens).toBe(4);
    expect(countClipTokens("it's").tokens).toBe(2);
    expect(countClipTokens('A CAT').tokens).toBe(2);
  });

  it('common long words are one token, unknown long ones about 5 letters each', () => {
    expect(countClipTokens('masterpiece beautiful detailed cinematic illustration professional watercolor').tokens).toBe(7);
    expect(countClipTokens('photorealistic').tokens).toBe(3); // 14 letters
    expect(countClipTokens('zxcvbnmasdf').tokens).toBe(3); // 11 letters
    expect(countClipTokens('dragons').tokens).toBe(1); // 7 letters
  });

  it('weights, emphasis brackets and lora tags do not count', () => {
    const plain = countClipTokens('a red cat, blue sky').tokens;
    expect(countClipTokens('a (red:1.2) cat, [blue] sky').tokens).toBe(plain);
    expect(countClipTokens('a ((red)) cat, blue sky <lora:myStyle_v2:0.8>').tokens).toBe(plain);
    expect(countClipTokens('<lora:foo:1> <hypernet:bar:0.5>').tokens).toBe(0);
    expect(countClipTokens('(a red cat:.5), (blue sky: 1.25)').tokens).toBe(plain);
  });

  it('a 100-word prompt makes 2 windows of at most 75', () => {
    const r = countClipTokens(Array.from({ length: 100 }, () => 'cat').join(' '));
    expect(r).toMatchObject({ tokens: 100, windows: 2, perWindow: [CLIP_WINDOW, 25] });
    expect(countClipTokens(Array(75).fill('cat').join(' ')).windows).toBe(1);
    expect(countClipTokens(Array(76).fill('cat').join(' ')).perWindow).toEqual([75, 1]);
    expect(countClipTokens(Array(160).fill('cat').join(' ')).perWindow).toEqual([75, 75, 10]);
  });

  it('BREAK (uppercase, a separate word) ends the window early', () => {
    expect(countClipTokens('a red cat BREAK blue sky')).toMatchObject({ tokens: 5, windows: 2, perWindow: [3, 2] });
    expect(countClipTokens('a cat,BREAK,a dog').perWindow).toEqual([3, 3]);
    expect(countClipTokens('a cat BREAK').perWindow).toEqual([2]);
    expect(countClipTokens('a BREAK b BREAK c').windows).toBe(3);
    // Not BREAK: lowercase, or part of a word.
    expect(countClipTokens('a break b').windows).toBe(1);
    expect(countClipTokens('BREAKFAST').windows).toBe(1);
    const long = `${Array(80).fill('cat').join(' ')} BREAK dog`;
    expect(countClipTokens(long).perWindow).toEqual([75, 5, 1]);
  });
});

describe('blocked terms', () => {
  const terms = ['ass', 'nude', 'big boobs', 'gore'];

  it('matches whole words, case-insensitively, in list order, as written in the list', () => {
    expect(findBlockedTerms('a NUDE statue, lots of Gore', terms)).toEqual(['nude', 'gore']);
    expect(findBlockedTerms('gore and nude', ['Nude', 'GORE'])).toEqual(['Nude', 'GORE']);
    expect(findBlockedTerms('a cat', terms)).toEqual([]);
    expect(findBlockedTerms('', terms)).toEqual([]);
  });

  it('"ass" is not in "class", "glass" or "assassin"', () => {
    expect(findBlockedTerms('a class of glass, assassin, first-class bass', ['ass'])).toEqual([]);
    expect(findBlockedTerms('kick ass', ['ass'])).toEqual(['ass']);
    expect(findBlockedTerms('nudes', ['nude'])).toEqual([]);
  });

  it('matches whole phrases, whatever the spacing between their words', () => {
    expect(findBlockedTerms('woman with big   boobs', terms)).toEqual(['big boobs']);
    expect(findBlockedTerms('a big dog with boobs', terms)).toEqual([]);
  });

  it('sees through separators inside a term', () => {
    for (const t of ['n.u.d.e', 'n u d e', 'n-u-d-e', 'a n_u_d_e woman', 'N. U. D. E.', 'nu-de', 'nu.de']) {
      expect(findBlockedTerms(t, terms), t).toEqual(['nude']);
    }
    expect(findBlockedTerms('b i g b o o b s', terms)).toEqual(['big boobs']);
  });

  it('sees through leetspeak', () => {
    expect(findBlockedTerms('nud3', terms)).toEqual(['nude']);
    expect(findBlockedTerms('a @$$', terms)).toEqual(['ass']);
    expect(findBlockedTerms('4ss', terms)).toEqual(['ass']);
    expect(findBlockedTerms('g0r3', terms)).toEqual(['gore']);
    expect(findBlockedTerms('n.u.d.3', terms)).toEqual(['nude']);
    expect(findBlockedTerms('7175', ['tits'])).toEqual(['tits']);
  });

  it('normalizes Unicode (NFKC) and ignores invisible characters', () => {
    expect(findBlockedTerms('ｎｕｄｅ', terms)).toEqual(['nude']); // fullwidth
    expect(findBlockedTerms('nu\u200bde', terms)).toEqual(['nude']); // zero-width space
    expect(findBlockedTerms('nu\u00adde', terms)).toEqual(['nude']); // soft hyphen
  });

  it('a number glued to a word does not hide it', () => {
    expect(findBlockedTerms('1girl, solo', ['girl'])).toEqual(['girl']);
    expect(findBlockedTerms('2girls', ['girls'])).toEqual(['girls']);
  });

  it('ignores blank terms and returns each term once', () => {
    expect(findBlockedTerms('nude nude gore', ['', '  ', 'nude', 'NUDE', 'gore', 'nude'])).toEqual(['nude', 'gore']);
    expect(findBlockedTerms('anything', ['', ' '])).toEqual([]);
  });

  it('terms without spaces between words (CJK) and symbols match as text', () => {
    expect(findBlockedTerms('裸の女性', ['裸'])).toEqual(['裸']);
    expect(findBlockedTerms('a 🍆 emoji', ['🍆'])).toEqual(['🍆']);
  });

  it('parseBlockedTerms: lines or commas, trimmed, no blanks or duplicates', () => {
    expect(parseBlockedTerms('nude\n Nude, gore ,,\n\n  big boobs  \r\nGORE')).toEqual(['nude', 'gore', 'big boobs']);
    expect(parseBlockedTerms('')).toEqual([]);
    expect(parseBlockedTerms(' \n , \n')).toEqual([]);
  });
});
