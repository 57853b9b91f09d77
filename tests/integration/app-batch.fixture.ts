// Child process for the app-kill drill: the whole app's services with the real worker, a queue of
// generations, printing "done <generationId>" after each lands. The test SIGKILLs this process.
import path from 'node:path';
import { GenerateParams } from '../../src/shared/contract';
import { createServices } from '../../src/main/services';
import { memoryBackend } from '../../src/main/services/settings/settings';

const [dataDir, modelsDir, python, count] = process.argv.slice(2);
const services = createServices({
  dataDir,
  appRoot: path.resolve(__dirname, '..', '..'),
  settingsBackend: memoryBackend({ modelDirs: [modelsDir], previewEvery: 0 }),
  shell: 'web',
  version: 'test',
  pythonOverride: python,
  log: () => {},
});
const model = services.models.list().find((m) => m.name === 'tiny-sd15')!;
services.hub.subscribe((name, payload) => {
  const j = payload as { state?: string; generationId?: string | null };
  if (name === 'jobs.changed' && j.state === 'done' && j.generationId) process.stdout.write(`done ${j.generationId}\n`);
});
services.jobs.submitMany(
  Array.from({ length: Number(count) }, (_, i) => GenerateParams.parse({ prompt: `drill ${i}`, modelId: model.id, seed: 1000 + i, steps: 3, width: 64, height: 64, batch: 2, sampler: 'Euler' })),
);
process.stdout.write('queued\n');
