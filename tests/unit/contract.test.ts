import { describe, expect, it } from 'vitest';
import { GenerateParams, METHOD_NAMES, methods } from '../../src/shared/contract';
import { AtelierError } from '../../src/shared/errors';
import { createDispatcher, EventHub, type Handlers } from '../../src/main/host/dispatcher';

function handlers(overrides: Partial<Handlers> = {}): Handlers {
  const fail = () => {
    throw new Error('not in this test');
  };
  const table = Object.fromEntries(METHOD_NAMES.map((m) => [m, fail])) as unknown as Handlers;
  return { ...table, ...overrides };
}

const valid = { prompt: 'a cat', modelId: 'm1', seed: 42 };

describe('contract schemas', () => {
  it('fills generation defaults and keeps what was given', () => {
    const p = GenerateParams.parse(valid);
    expect(p).toMatchObject({ mode: 'txt2img', sampler: 'Euler a', steps: 20, cfg: 7, width: 512, height: 512, batch: 1, negativePrompt: '' });
  });

  it.each([
    [{ ...valid, width: 500 }, 'width: must be a multiple of 8'],
    [{ ...valid, width: 100000 }, 'width: must be at most 4096 px'],
    [{ ...valid, height: 0 }, 'height: must be at least 64 px'],
    [{ ...valid, steps: -1 }, 'steps'],
    [{ ...valid, steps: Number.NaN }, 'steps'],
    [{ ...valid, cfg: Number.POSITIVE_INFINITY }, 'cfg'],
    [{ ...valid, seed: 2 ** 32 }, 'seed'],
    [{ ...valid, prompt: '   ' }, 'prompt: is empty'],
    [{ ...valid, sampler: 'Heun++' }, 'sampler'],
    [{ ...valid, mode: 'img2img' }, 'initImageId: is required for img2img'],
    [{ ...valid, prompt: 'x'.repeat(20001) }, 'prompt'],
  ])('refuses bad input #%# naming the field', (input, expected) => {
    const r = GenerateParams.safeParse(input);
    expect(r.success).toBe(false);
    const text = r.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ');
    expect(text).toContain(expected);
  });

  it('has an input and output schema for every method', () => {
    for (const m of METHOD_NAMES) {
      expect(methods[m].input, m).toBeDefined();
      expect(methods[m].output, m).toBeDefined();
    }
  });
});

describe('dispatcher', () => {
  it('validates input before the handler runs and names the bad field', async () => {
    let called = false;
    const d = createDispatcher(handlers({ 'history.get': () => ((called = true), null as never) }));
    const r = await d('history.get', { id: 42 });
    expect(r).toEqual({ ok: false, error: { code: 'BAD_REQUEST', message: expect.stringContaining('id:') } });
    expect(called).toBe(false);
  });

  it('refuses unknown methods and extra fields', async () => {
    const d = createDispatcher(handlers({ 'app.info': () => ({ version: '1', shell: 'web', platform: 'x', dataDir: '/' }) }));
    expect(await d('fs.readFile', {})).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST', message: expect.stringContaining('Unknown method') } });
    expect(await d('__proto__', {})).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    expect(await d('app.info', { sneaky: 1 })).toMatchObject({ ok: false, error: { code: 'BAD_REQUEST' } });
    expect(await d('app.info', undefined)).toMatchObject({ ok: true, value: { version: '1' } });
  });

  it('passes typed errors through and hides internals of unknown ones', async () => {
    const logged: string[] = [];
    const d = createDispatcher(
      handlers({
        'history.get': () => {
          throw new AtelierError('NOT_FOUND', 'No history entry x.');
        },
        'history.list': () => {
          throw new TypeError('boom at secret/path.ts:12');
        },
      }),
      (l) => logged.push(l),
    );
    expect(await d('history.get', { id: 'x' })).toEqual({ ok: false, error: { code: 'NOT_FOUND', message: 'No history entry x.' } });
    const r = await d('history.list', {});
    expect(r).toMatchObject({ ok: false, error: { code: 'INTERNAL' } });
    expect(JSON.stringify(r)).not.toMatch(/\n\s+at /); // no stack trace crosses the boundary
    expect(logged.join('\n')).toContain('boom');
  });

  it('maps a full disk to DISK_FULL', async () => {
    const d = createDispatcher(
      handlers({
        'history.delete': () => {
          throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
        },
      }),
    );
    expect(await d('history.delete', { ids: ['a'] })).toMatchObject({ ok: false, error: { code: 'DISK_FULL' } });
  });
});

describe('EventHub', () => {
  it('delivers valid events and refuses ones that break the contract', () => {
    const hub = new EventHub();
    const got: unknown[] = [];
    const off = hub.subscribe((name, payload) => got.push([name, payload]));
    hub.emit('history.added', { generationId: 'g1' });
    expect(() => hub.emit('history.added', { generationId: 5 } as never)).toThrow(/does not match the contract/);
    off();
    hub.emit('history.added', { generationId: 'g2' });
    expect(got).toEqual([['history.added', { generationId: 'g1' }]]);
  });
});
