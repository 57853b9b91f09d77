// Child process for the crash test: writes generations forever, printing a line after each commit.
import { HistoryStore } from '../../src/main/services/history/store';
import { makePng } from '../helpers';

const store = new HistoryStore({ dir: process.argv[2] });
const png = makePng(64, 64);
for (let i = 0; ; i++) {
  store.addGeneration({
    backend: 'local', mode: 'txt2img', prompt: `p${i}`, negativePrompt: '', modelId: null, modelName: 'm', modelHash: null,
    sampler: 'Euler', steps: 1, cfg: 1, seed: i, width: 64, height: 64, batch: 2, strength: null, control: null, loras: [],
    device: null, timings: {}, costUsd: null, params: {}, images: [{ data: png, seed: i }, { data: png, seed: i + 1 }],
  });
  process.stdout.write(`${i}\n`);
}
