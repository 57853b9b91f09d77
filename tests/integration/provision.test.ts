/**
 * Provisioning for real, with a one-package lock so it takes seconds: a venv is
 * built in a cache keyed by the lock's hash, reused when nothing changed,
 * rebuilt when it is broken or the lock changes.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { lockHash, provision, readyPython, venvDir, venvPython } from '../../src/main/services/runtime/provision';
import { tmpDir } from '../helpers';

describe('provision', () => {
  const runtimeDir = tmpDir('atelier-rt-');
  const cacheRoot = tmpDir('atelier-cache-');
  fs.writeFileSync(path.join(runtimeDir, 'requirements.lock'), 'six==1.16.0\n');
  const opts = { runtimeDir, cacheRoot, requiredModules: ['six'] };

  it('builds a venv from the lock with progress, then reuses it', async () => {
    const phases: string[] = [];
    const py = await provision({ ...opts, onProgress: (p) => phases.push(`${p.phase}@${p.fraction}`) });
    expect(py).toBe(venvPython(venvDir(opts)));
    expect(venvDir(opts)).toContain(lockHash(runtimeDir));
    expect(spawnSync(py, ['-c', 'import six; print(six.__version__)'], { encoding: 'utf8' }).stdout.trim()).toBe('1.16.0');
    expect(phases[0]).toMatch(/Finding Python/);
    expect(phases[phases.length - 1]).toBe('Python runtime ready@1');
    const fractions = phases.map((p) => Number(p.split('@')[1]));
    expect([...fractions].sort((a, b) => a - b)).toEqual(fractions); // the bar only moves forward

    const mtime = fs.statSync(py).mtimeMs;
    const again: string[] = [];
    expect(await provision({ ...opts, onProgress: (p) => again.push(p.phase) })).toBe(py);
    expect(again).not.toContain('Creating the virtual environment');
    expect(fs.statSync(py).mtimeMs).toBe(mtime);
  }, 300000);

  it('repairs a venv whose packages were broken', async () => {
    const py = readyPython(opts)!;
    const site = spawnSync(py, ['-c', 'import six, os; print(os.path.dirname(six.__file__))'], { encoding: 'utf8' }).stdout.trim();
    fs.rmSync(path.join(site, 'six.py'));
    const phases: string[] = [];
    await provision({ ...opts, onProgress: (p) => phases.push(p.phase) });
    expect(phases).toContain('Creating the virtual environment');
    expect(spawnSync(py, ['-c', 'import six'], { encoding: 'utf8' }).status).toBe(0);
  }, 300000);

  it('a changed lock gets a new venv', async () => {
    const before = venvDir(opts);
    fs.writeFileSync(path.join(runtimeDir, 'requirements.lock'), 'six==1.17.0\n');
    expect(readyPython(opts)).toBeNull();
    expect(venvDir(opts)).not.toBe(before);
  });

  it('says clearly when the chosen interpreter is not Python', async () => {
    await expect(provision({ ...opts, basePython: '/bin/false' })).rejects.toThrow(/does not run as a Python interpreter/);
  });
});
