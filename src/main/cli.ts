/**
 * The command line, on the same services as the app:
 *   npm run generate -- --prompt "…" [--negative …] [--model PATH] [--seed N] [--steps N]
 *        [--cfg X] [--sampler NAME] [--width W --height H] [--batch N] [--out DIR]
 *        [--lora PATH[:WEIGHT]]...   (repeatable; weight defaults to 1)
 *   npm run generate -- --cloud gpt-image-1 --prompt "…" [--size 1024x1536] [--quality high]
 *        [--style natural] [--batch N] [--over-budget]   (OpenAI Images; the key from OPENAI_API_KEY)
 * Prints one JSON line per image: {"generationId", "imageId", "seed", "path"}.
 */
import Conf from 'conf';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { CLOUD_MODELS, cloudModel, formatUsd, roundUsd } from '../shared/cloud';
import { GenerateParams, MAX_SEED, type Generation } from '../shared/contract';
import { modelDefaults } from '../shared/presets';
import { AtelierError } from '../shared/errors';
import { describeZodError } from './host/dispatcher';
import { parseLoraArg } from './lib/loraArg';
import { defaultDataDir, SETTINGS_NAME } from './lib/paths';
import { createServices } from './services';
import { storeBackend } from './services/settings/settings';

declare const __APP_VERSION__: string;

const USAGE = `usage: atelier generate --prompt TEXT [--negative TEXT] [--model PATH] [--seed N] [--steps N] [--cfg X]
                        [--sampler NAME] [--width W] [--height H] [--batch N] [--out DIR] [--quiet]
                        [--lora PATH[:WEIGHT]] (repeatable: several LoRAs, each with its weight, default 1)
       atelier generate --cloud MODEL --prompt TEXT [--size WxH|auto] [--quality Q] [--style S] [--batch N]
                        [--over-budget] [--out DIR] [--quiet]   (OpenAI Images; key from OPENAI_API_KEY;
                        models: ${CLOUD_MODELS.map((m) => m.id).join(', ')})`;


async function generate(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      prompt: { type: 'string' },
      negative: { type: 'string', default: '' },
      model: { type: 'string' },
      lora: { type: 'string', multiple: true, default: [] },
      seed: { type: 'string' },
      steps: { type: 'string' },
      cfg: { type: 'string' },
      sampler: { type: 'string' },
      width: { type: 'string' },
      height: { type: 'string' },
      batch: { type: 'string' },
      out: { type: 'string' },
      cloud: { type: 'string' },
      size: { type: 'string' },
      quality: { type: 'string', default: '' },
      style: { type: 'string', default: '' },
      'over-budget': { type: 'boolean', default: false },
      quiet: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  const log = values.quiet ? () => {} : (line: string) => console.error(line);
  const dataDir = defaultDataDir();
  const conf = new Conf({ projectName: 'atelier', cwd: dataDir, configName: SETTINGS_NAME });
  const services = createServices({
    dataDir,
    appRoot: path.resolve(__dirname, '..', '..'),
    settingsBackend: storeBackend(conf as unknown as { store: Record<string, unknown> }),
    shell: 'web',
    version: __APP_VERSION__,
    pythonOverride: process.env.ATELIER_PYTHON,
    log: values.quiet ? () => {} : (l) => console.error(l),
  });
  try {
    if (values.cloud !== undefined) return await generateCloud(services, values, log);
    const settings = services.settings.get();
    const model = values.model
      ? services.models.register(values.model, 'cli')
      : (() => {
          // The last model used, else the user's own, else the built-in demo model.
          const checkpoints = services.models.list().filter((m) => m.kind === 'checkpoint');
          return checkpoints.find((m) => m.id === settings.lastModelId) ?? checkpoints.find((m) => m.source !== 'embedded') ?? checkpoints[0];
        })();
    if (!model) throw new AtelierError('MODEL_NOT_FOUND', 'No model given and none in the library: pass --model PATH.');
    const num = (v: string | undefined) => (v === undefined ? undefined : Number(v));
    const loras = (values.lora ?? []).map((arg) => {
      const { path: p, weight } = parseLoraArg(arg);
      const rec = services.models.register(p, 'cli');
      if (rec.kind !== 'lora') throw new AtelierError('BAD_REQUEST', `--lora ${p}: ${rec.name} is a ${rec.kind}, not a LoRA.`);
      return { modelId: rec.id, weight };
    });
    const parsed = GenerateParams.safeParse({
      prompt: values.prompt ?? '',
      negativePrompt: values.negative,
      modelId: model.id,
      sampler: values.sampler ?? settings.defaults.sampler,
      steps: num(values.steps) ?? settings.defaults.steps,
      cfg: num(values.cfg) ?? modelDefaults(model).cfg ?? settings.defaults.cfg,
      seed: num(values.seed) ?? Math.floor(Math.random() * MAX_SEED),
      width: num(values.width) ?? model.nativeSize ?? settings.defaults.width,
      height: num(values.height) ?? model.nativeSize ?? settings.defaults.height,
      batch: num(values.batch) ?? 1,
      loras,
    });
    if (!parsed.success) throw new AtelierError('BAD_REQUEST', `${describeZodError(parsed.error)}\n${USAGE}`);
    log(`atelier: generating with ${model.name} (${model.family})${loras.length ? ` + ${loras.length} LoRA(s)` : ''}…`);
    let lastStep = -1;
    services.hub.subscribe((name, payload) => {
      if (name === 'jobs.progress' && !values.quiet) {
        const p = payload as { step: number; total: number; image: number };
        if (p.step !== lastStep) process.stderr.write(`\r  image ${p.image + 1} step ${p.step}/${p.total}   `);
        lastStep = p.step;
      }
    });
    const { gen, files } = await runJob(services, parsed.data, values.out);
    if (!values.quiet) process.stderr.write('\n');
    gen.images.forEach((img, i) => console.log(JSON.stringify({ generationId: gen.id, imageId: img.id, seed: img.seed, path: files[i] })));
    return 0;
  } finally {
    await services.dispose();
  }
}

type Services = ReturnType<typeof createServices>;

/** `--cloud MODEL`: the same queue and history, with OpenAI Images as the backend. */
async function generateCloud(
  services: Services,
  values: { cloud?: string; prompt?: string; size?: string; quality: string; style: string; batch?: string; out?: string; quiet: boolean; 'over-budget': boolean },
  log: (line: string) => void,
): Promise<number> {
  const m = cloudModel(values.cloud ?? '');
  if (!m) throw new AtelierError('BAD_REQUEST', `--cloud ${values.cloud}: not an OpenAI image model; one of ${CLOUD_MODELS.map((x) => x.id).join(', ')}.`);
  const parsed = GenerateParams.safeParse({
    backend: 'cloud',
    modelId: m.id,
    prompt: values.prompt ?? '',
    seed: 0,
    batch: values.batch === undefined ? 1 : Number(values.batch),
    cloud: { size: values.size ?? m.sizes[0], quality: values.quality, style: values.style, overBudgetOk: values['over-budget'] },
  });
  if (!parsed.success) throw new AtelierError('BAD_REQUEST', `${describeZodError(parsed.error)}\n${USAGE}`);
  const est = services.cloud.estimate(m.id, parsed.data.cloud!.size, parsed.data.cloud!.quality, parsed.data.batch);
  log(`atelier: asking OpenAI (${m.label}) for ${parsed.data.batch} image(s), about ${formatUsd(est.costUsd)}…`);
  services.hub.subscribe((name, payload) => {
    const note = name === 'jobs.changed' ? (payload as { note: string | null }).note : null;
    if (note) log(`  ${note}`);
  });
  const { gen, files } = await runJob(services, parsed.data, values.out);
  const costUsd = roundUsd((gen.costUsd ?? 0) / gen.images.length);
  gen.images.forEach((img, i) => console.log(JSON.stringify({ generationId: gen.id, imageId: img.id, model: gen.modelName, costUsd, revisedPrompt: gen.revisedPrompt, path: files[i] })));
  return 0;
}

/** Queue one job, wait for it, refuse a failure with its code, and copy the images to `out` when given. */
async function runJob(services: Services, params: GenerateParams, out: string | undefined): Promise<{ gen: Generation; files: string[] }> {
  const job = services.jobs.submit(params);
  await services.jobs.whenIdle();
  const done = services.jobs.list().find((j) => j.id === job.id)!;
  if (done.state !== 'done') throw new AtelierError((done.error?.code as never) ?? 'INTERNAL', done.error?.message ?? `job ${done.state}`);
  const gen = services.history.get(done.generationId!);
  const files = gen.images.map((img) => {
    const file = path.join(services.history.dir, ...img.path.split('/'));
    if (!out) return file;
    fs.mkdirSync(out, { recursive: true });
    const dest = path.join(path.resolve(out), `${gen.id}-${img.index}.png`);
    fs.copyFileSync(file, dest);
    return dest;
  });
  return { gen, files };
}

async function main(): Promise<number> {
  const [command, ...rest] = process.argv.slice(2);
  if (command === 'generate') return generate(rest);
  console.error(USAGE);
  return 2;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    const e = err as AtelierError;
    console.error(`atelier: ${e.code ? `${e.code}: ` : ''}${e.message}`);
    process.exit(1);
  },
);
