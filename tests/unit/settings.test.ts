import Conf from 'conf';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { methods } from '../../src/shared/contract';
import { memoryBackend, SettingsService, storeBackend } from '../../src/main/services/settings/settings';
import { tmpDir } from '../helpers';

describe('SettingsService', () => {
  it('a patch changes only its own keys, also after the contract has parsed it', () => {
    const s = new SettingsService(memoryBackend({ modelDirs: ['/models'], firstRunDone: true, cloudBudgetUsd: 20, defaults: { steps: 30 } }));
    const patch = methods['settings.update'].input.parse({ lastModelId: 'm1' });
    expect(patch).toEqual({ lastModelId: 'm1' }); // no defaults filled in for the other keys
    const next = s.update(patch);
    expect(next).toMatchObject({ lastModelId: 'm1', modelDirs: ['/models'], firstRunDone: true, cloudBudgetUsd: 20, defaults: { steps: 30 } });
  });

  it('starts from defaults', () => {
    const s = new SettingsService(memoryBackend());
    expect(s.get()).toMatchObject({ theme: 'dark', memoryMode: 'auto', previewEvery: 2, modelDirs: [], defaults: { steps: 20, sampler: 'Euler a' } });
  });

  it('keeps valid keys and resets only the corrupt ones', () => {
    const logs: string[] = [];
    const b = memoryBackend({ previewEvery: 5, memoryMode: 'turbo', modelDirs: 'not-a-list', pythonPath: '/usr/bin/python3' });
    const s = new SettingsService(b, () => {}, (l) => logs.push(l));
    expect(s.get()).toMatchObject({ previewEvery: 5, memoryMode: 'auto', modelDirs: [], pythonPath: '/usr/bin/python3' });
    expect(logs.join()).toMatch(/modelDirs, memoryMode/);
    expect((b.value as { memoryMode: string }).memoryMode).toBe('auto'); // repaired on disk too
  });

  it('validates updates, refusing bad values without changing anything', () => {
    const changes: unknown[] = [];
    const s = new SettingsService(memoryBackend(), (v) => changes.push(v));
    expect(() => s.update({ previewEvery: -3 })).toThrow(/previewEvery/);
    expect(s.get().previewEvery).toBe(2);
    s.update({ previewEvery: 4 });
    expect(s.get().previewEvery).toBe(4);
    expect(changes).toHaveLength(1);
  });

  it('persists through conf, the store the web mode uses (same format as electron-store)', () => {
    const dir = tmpDir();
    const conf = new Conf({ projectName: 'atelier', cwd: dir, configName: 'settings' });
    new SettingsService(storeBackend(conf as never)).update({ modelDirs: ['/models'] });
    const onDisk = JSON.parse(fs.readFileSync(path.join(dir, 'settings.json'), 'utf8'));
    expect(onDisk.modelDirs).toEqual(['/models']);
    const again = new SettingsService(storeBackend(new Conf({ projectName: 'atelier', cwd: dir, configName: 'settings' }) as never));
    expect(again.get().modelDirs).toEqual(['/models']);
  });
});
