// Child process for the faults suite's app-kill-mid-training drill: the whole app's services with the
// real worker, one LoRA training on a small dataset, printing what the UI would see ("worker <pid>",
// "job <id>", "step <n>", "checkpoint <n>", "state <state>"). The test SIGKILLs this process after a
// checkpoint, then starts fresh services on the same data folder and resumes the job.
import path from 'node:path';
import { TrainingConfig } from '../../src/shared/contract';
import { createServices } from '../../src/main/services';
import { memoryBackend } from '../../src/main/services/settings/settings';
import { addHeartDataset } from '../helpers';

const [dataDir, modelsDir, python, configJson] = process.argv.slice(2);
const services = createServices({
  dataDir,
  appRoot: path.resolve(__dirname, '..', '..'),
  settingsBackend: memoryBackend({ modelDirs: [modelsDir], previewEvery: 0 }),
  shell: 'web',
  version: 'test',
  pythonOverride: python,
  log: () => {},
  runtime: { pingIntervalMs: 1000, pingTimeoutMs: 30000 },
});
const say = (line: string) => process.stdout.write(`${line}\n`);
const model = services.models.list().find((m) => m.name === 'tiny-sd15' && m.format === 'diffusers')!;
const datasetId = addHeartDataset(services.datasets);
let checkpoint = 0;
services.hub.subscribe((name, payload) => {
  if (name === 'training.progress') say(`step ${(payload as { step: number }).step}`);
  if (name === 'training.changed') {
    const j = payload as { checkpointStep: number; state: string };
    if (j.checkpointStep > checkpoint) say(`checkpoint ${(checkpoint = j.checkpointStep)}`);
    if (j.state !== 'running' && j.state !== 'queued') say(`state ${j.state}`);
  }
});
void services.runtime.ensureStarted().then(() => {
  say(`worker ${services.runtime.workerPid}`);
  const job = services.training.start({ name: 'drill', datasetId, modelId: model.id, config: TrainingConfig.parse(JSON.parse(configJson)) });
  say(`job ${job.id}`);
});
