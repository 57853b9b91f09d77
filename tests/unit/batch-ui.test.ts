import { describe, expect, it } from 'vitest';
import { expandMatrix, matrixCount, MAX_BATCH_JOBS, planBatch, planSummary, promptLines, tidyPrompt } from '../../src/renderer/features/generate/batch';

describe('batch modes of the generate panel', () => {
  it('one prompt per line: non-empty lines, trimmed', () => {
    expect(promptLines('a red circle\n\n  a blue square  \r\na green star\n   \n')).toEqual(['a red circle', 'a blue square', 'a green star']);
    const plan = planBatch('lines', 'one\ntwo\n\nthree');
    expect(plan).toEqual({ prompts: ['one', 'two', 'three'], count: 3, error: null });
    expect(planSummary(plan)).toBe('3 jobs will be queued');
    expect(planSummary(plan, 2)).toBe('3 jobs will be queued (6 images)');
    expect(planBatch('lines', ' \n \n').error).toMatch(/empty/);
  });

  it('a prompt matrix expands every {a|b} group, the first varying slowest', () => {
    expect(expandMatrix('a {red|blue} {circle|square}')).toEqual(['a red circle', 'a red square', 'a blue circle', 'a blue square']);
    expect(matrixCount('a {red|blue} {circle|square}')).toBe(4);
    expect(expandMatrix('{ x | y |z}')).toEqual(['x', 'y', 'z']);
    const plan = planBatch('matrix', 'a {red|blue} {circle|square}');
    expect(plan.count).toBe(4);
    expect(planSummary(plan)).toBe('4 jobs will be queued');
  });

  it('braces without options stay text, and empty options leave a tidy prompt', () => {
    expect(expandMatrix('a {masterpiece} cat')).toEqual(['a {masterpiece} cat']);
    expect(expandMatrix('a {|big} cat, {|red}, sitting')).toEqual(['a cat, sitting', 'a cat, red, sitting', 'a big cat, sitting', 'a big cat, red, sitting']);
    expect(tidyPrompt(' , a  cat ,, b ,')).toBe('a cat, b');
    expect(planBatch('matrix', 'no groups here')).toEqual({ prompts: ['no groups here'], count: 1, error: null });
    expect(planBatch('matrix', '{|}').error).toMatch(/empty/);
  });

  it('caps a matrix at 500 jobs with a message that says how many it would make', () => {
    const big = '{a|b|c|d|e|f|g|h} {1|2|3|4|5|6|7|8} {x|y|z|w|v|u|t|s} {p|q}'; // 1024
    const plan = planBatch('matrix', big);
    expect(plan.prompts).toEqual([]);
    expect(plan.count).toBe(1024);
    expect(plan.error).toContain('1,024 combinations');
    expect(plan.error).toContain(`${MAX_BATCH_JOBS}`);
    expect(planSummary(plan)).toMatch(/^The prompt makes 1,024 combinations/);
    expect(() => expandMatrix(big)).toThrow(/more than 500/);
    // Exactly at the cap is fine.
    const at = planBatch('matrix', '{a|b|c|d|e} {1|2|3|4|5|6|7|8|9|10} {x|y|z|w|v|u|t|s|r|q}');
    expect(at.error).toBeNull();
    expect(at.prompts).toHaveLength(500);
    // A huge matrix is refused without being built.
    const huge = Array.from({ length: 40 }, () => '{a|b|c}').join(' ');
    expect(planBatch('matrix', huge).error).toMatch(/combinations/);
    expect(planBatch('lines', Array.from({ length: 501 }, (_, i) => `p${i}`).join('\n')).error).toContain('501 lines');
  });

  it('single mode queues the prompt as written', () => {
    expect(planBatch('single', 'a {red|blue} cat\nsecond line')).toEqual({ prompts: ['a {red|blue} cat\nsecond line'], count: 1, error: null });
  });
});
