/**
 * The generation queue's bookkeeping on a real SQLite file: it survives a
 * restart in order, jobs move and retry. The worker lock is held (as a
 * training would hold it), so nothing runs and no Python is needed.
 */
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GenerateParams } from '../../src/shared/contract';
import { HistoryStore } from '../../src/main/services/history/store';
import { cacheKey, JobsService } from '../../src/main/services/jobs/jobs';
import { ModelsService } from '../../src/main/services/models/models';
import { WorkerLock } from '../../src/main/services/runtime/lock';
import type { RuntimeService } from '../../src/main/services/runtime/runtime';
import { memoryBackend, SettingsService } from '../../src/main/services/settings/settings';
import { tmpDir, writeSafetensors } from '../helpers';

const stores: HistoryStore[] = [];
afterEach(() => stores.splice(0).forEach((s) => s.close()));

function boot(lib: string) {
  const history = new HistoryStore({ dir: lib });
  stores.push(history);
  const dir = path.join(lib, 'base');
  fs.mkdirSync(dir, { recursive: true });
  if (!fs.existsSync(path.join(dir, 'm.safetensors'))) writeSafetensors(path.join(dir, 'm.safetensors'), ['model.diffusion_model.input_blocks.0.0.weight']);
  const models = new ModelsService(history, () => [{ dir, source: 'folder' }]);
  models.rescan();
  const lock = new WorkerLock();
  const jobs = new JobsService({
    history,
    models,
    runtime: {} as RuntimeService,
    settings: new SettingsService(memoryBackend({}), () => {}),
    jobsDir: path.join(lib, 'jobs'),
    lock,
  });
  return { history, models, jobs, lock, modelId: models.list()[0].id };
}

const p = (modelId: string, prompt: string, extra: Record<string, unknown> = {}) => GenerateParams.parse({ prompt, modelId, seed: 1, ...extra });

describe('the generation queue', () => {
  it('survives a restart in order, and moves', async () => {
    const lib = tmpDir();
    const a = boot(lib);
    const hold = await a.lock.acquire('training:x'); // nothing may start
    const jobs = a.jobs.submitMany(['one', 'two', 'three'].map((t) => p(a.modelId, t)));
    expect(jobs.map((j) => j.state)).toEqual(['queued', 'queued', 'queued']);
    await new Promise((r) => setTimeout(r, 20));
    a.jobs.move(jobs[2].id, 0);
    expect(a.jobs.list().filter((j) => j.state === 'queued').map((j) => j.params.prompt)).toEqual(['three', 'one', 'two']);
    await a.jobs.cancel(jobs[1].id);
    // The app stops here (the lock is never released, as in a crash): the queue is on disk.
    void hold;
    a.history.close();
    const b = boot(lib);
    await b.lock.acquire('training:y');
    expect(b.jobs.list().map((j) => [j.params.prompt, j.state])).toEqual([
      ['three', 'queued'],
      ['one', 'queued'],
    ]);
  });

  it('retries failed or cancelled jobs with the same parameters and refuses the rest', async () => {
    const a = boot(tmpDir());
    await a.lock.acquire('training:x');
    const [j] = a.jobs.submitMany([p(a.modelId, 'again')]);
    expect(() => a.jobs.retry(j.id)).toThrow(/only failed or cancelled/);
    await a.jobs.cancel(j.id);
    const r = a.jobs.retry(j.id);
    expect(r).toMatchObject({ state: 'queued', params: { prompt: 'again' } });
    expect(r.id).not.toBe(j.id);
    expect(() => a.jobs.move(j.id, 0)).toThrow(/Only a queued job/);
  });

  it('a bad item queues none of a batch', async () => {
    const a = boot(tmpDir());
    await a.lock.acquire('training:x');
    expect(() => a.jobs.submitMany([p(a.modelId, 'ok'), p('missing-model', 'bad')])).toThrow(/not in the library/);
    expect(a.jobs.list()).toEqual([]);
    expect(a.history.queueList()).toEqual([]);
  });
});

describe('the result cache key', () => {
  const base = p('m1', 'a cat', { seed: 5 });
  const h = { model: 'abc', loras: [], control: null, init: null };
  it('is the same for the same request, and changes with anything that changes the pixels', () => {
    expect(cacheKey(base, h)).toBe(cacheKey(p('m1', 'a cat', { seed: 5 }), h));
    expect(cacheKey({ ...base, noCache: true }, h)).toBe(cacheKey(base, h));
    expect(cacheKey({ ...base, modelId: 'other-id-same-file' }, h)).toBe(cacheKey(base, h)); // the file's hash decides, not the row
    for (const change of [{ seed: 6 }, { prompt: 'a dog' }, { steps: 21 }, { cfg: 7.5 }, { sampler: 'Euler' }, { width: 576 }, { negativePrompt: 'x' }, { batch: 2 }]) {
      expect(cacheKey({ ...base, ...change } as GenerateParams, h), JSON.stringify(change)).not.toBe(cacheKey(base, h));
    }
    expect(cacheKey(base, { ...h, model: 'abd' })).not.toBe(cacheKey(base, h));
    const withLora = { ...base, loras: [{ modelId: 'l', weight: 1 }] };
    expect(cacheKey(withLora, { ...h, loras: ['x1'] })).not.toBe(cacheKey(withLora, { ...h, loras: ['x2'] }));
    expect(cacheKey({ ...withLora, loras: [{ modelId: 'l', weight: 0.5 }] }, { ...h, loras: ['x1'] })).not.toBe(cacheKey(withLora, { ...h, loras: ['x1'] }));
  });
});
