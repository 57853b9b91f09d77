/**
 * The composition root: builds every service from plain paths and hands back
 * the contract's handler table and the event hub. Electron's shell, the web
 * mode, the CLI and the tests all start Atelier through here.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { AppInfo } from '../../shared/contract';
import { AtelierError } from '../../shared/errors';
import { createDispatcher, EventHub, type Dispatch, type Handlers } from '../host/dispatcher';
import { CloudService } from './cloud/cloud';
import { envKeyStore, type KeyStore } from './cloud/keystore';
import { exportBoard, exportGeneration, readImageMetadata } from './history/exports';
import { HistoryStore } from './history/store';
import { JobsService } from './jobs/jobs';
import { DownloadsService } from './models/downloads';
import { ModelsService } from './models/models';
import { defaultCacheRoot } from './runtime/provision';
import { WorkerLock } from './runtime/lock';
import { RuntimeService } from './runtime/runtime';
import { DatasetsService } from './training/datasets';
import { TrainingStore } from './training/store';
import { TrainingService } from './training/training';
import { SettingsService, type SettingsBackend } from './settings/settings';

export interface ServicesOptions {
  /** User data: the history database, images, scratch. */
  dataDir: string;
  /** Where `python-runtime/` and `resources/` live (the repo, or the packaged app's resources). */
  appRoot: string;
  settingsBackend: SettingsBackend;
  shell: AppInfo['shell'];
  version: string;
  cacheRoot?: string;
  pythonOverride?: string;
  autoProvision?: boolean;
  log?: (line: string) => void;
  /** Where the OpenAI key lives: the OS keychain in Electron; default OPENAI_API_KEY (web mode, CLI). */
  keyStore?: KeyStore;
  /** An OpenAI-compatible endpoint (tests); default OPENAI_BASE_URL or OpenAI's. */
  openaiBaseURL?: string;
  cloud?: Partial<Pick<ConstructorParameters<typeof CloudService>[0], 'timeoutMs' | 'maxAttempts' | 'maxWaitMs'>>;
  runtime?: Partial<Pick<ConstructorParameters<typeof RuntimeService>[0], 'pingIntervalMs' | 'pingTimeoutMs' | 'helloTimeoutMs' | 'env'>>;
}

export interface Services {
  hub: EventHub;
  handlers: Handlers;
  dispatch: Dispatch;
  history: HistoryStore;
  settings: SettingsService;
  models: ModelsService;
  runtime: RuntimeService;
  jobs: JobsService;
  cloud: CloudService;
  downloads: DownloadsService;
  datasets: DatasetsService;
  training: TrainingService;
  dispose(): Promise<void>;
}

export function createServices(opts: ServicesOptions): Services {
  const log = opts.log ?? ((line: string) => console.error(line));
  const hub = new EventHub();
  const history = new HistoryStore({ dir: opts.dataDir });
  const swept = history.sweepOrphans();
  if (swept) log(`history: removed ${swept} orphan file(s) left by an interrupted write`);
  const settings = new SettingsService(opts.settingsBackend, (s) => hub.emit('settings.changed', s), log);
  const models = new ModelsService(
    history,
    () => [
      { dir: path.join(opts.appRoot, 'resources', 'models'), source: 'embedded' },
      // The user's own library: LoRAs trained here land in models/loras.
      { dir: path.join(opts.dataDir, 'models'), source: 'library' },
      ...settings.get().modelDirs.map((dir) => ({ dir, source: `folder:${dir}` })),
    ],
    log,
  );
  models.rescan();
  const runtime = new RuntimeService({
    runtimeDir: path.join(opts.appRoot, 'python-runtime'),
    cacheRoot: opts.cacheRoot ?? defaultCacheRoot(),
    settings: () => settings.get(),
    onStatus: (s) => hub.emit('runtime.changed', s),
    log,
    pythonOverride: opts.pythonOverride,
    autoProvision: opts.autoProvision,
    ...opts.runtime,
  });
  const lock = new WorkerLock();
  const cloud = new CloudService({
    keys: opts.keyStore ?? envKeyStore(),
    spentSince: (iso) => history.cloudSpendSince(iso),
    budget: () => settings.get().cloudBudgetUsd,
    baseURL: opts.openaiBaseURL ?? (process.env.ATELIER_OPENAI_BASE_URL || undefined),
    log,
    ...opts.cloud,
  });
  const downloads = new DownloadsService({
    workDir: path.join(opts.dataDir, 'downloads'),
    // inside the library's own models folder, so a rescan keeps finding them
    destDir: path.join(opts.dataDir, 'models', 'downloads'),
    onChanged: (d) => hub.emit('downloads.changed', d),
    onPlaced: (file) => {
      models.register(file, 'library');
      hub.emit('models.changed', {});
    },
    log,
  });
  const cloudChanged = <T>(v: T): T => {
    hub.emit('cloud.changed', cloud.status());
    return v;
  };
  const jobs = new JobsService({
    lock,
    cloud,
    history,
    models,
    runtime,
    settings,
    jobsDir: path.join(opts.dataDir, 'jobs'),
    onJob: (j) => hub.emit('jobs.changed', j),
    onProgress: (p) => hub.emit('jobs.progress', p),
    onAdded: (id) => {
      hub.emit('history.added', { generationId: id });
      if (history.get(id).backend === 'cloud') hub.emit('cloud.changed', cloud.status());
    },
    log,
  });
  const datasets = new DatasetsService(path.join(opts.dataDir, 'datasets'), opts.dataDir, (id) => hub.emit('datasets.changed', { id }));
  const training = new TrainingService({
    store: new TrainingStore(history.database),
    datasets,
    models,
    runtime,
    lock,
    libraryDir: opts.dataDir,
    lorasDir: path.join(opts.dataDir, 'models', 'loras'),
    onChanged: (j) => hub.emit('training.changed', j),
    onProgress: (p) => hub.emit('training.progress', p),
    onModelsChanged: () => hub.emit('models.changed', {}),
    log,
  });

  const boardChanged = <T>(v: T): T => {
    hub.emit('boards.changed', {});
    return v;
  };
  const handlers: Handlers = {
    'app.info': () => ({ version: opts.version, shell: opts.shell, platform: process.platform, dataDir: opts.dataDir }),
    'settings.get': () => settings.get(),
    'settings.update': (patch) => {
      const before = settings.get();
      for (const dir of patch.modelDirs ?? []) {
        if (before.modelDirs.includes(dir)) continue;
        if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new AtelierError('BAD_REQUEST', `No folder at ${dir}: check the path (it must be a folder, e.g. an A1111 or ComfyUI models folder).`);
      }
      const next = settings.update(patch);
      if (next.modelDirs.join('\n') !== before.modelDirs.join('\n')) models.rescan();
      if (next.cloudBudgetUsd !== before.cloudBudgetUsd) hub.emit('cloud.changed', cloud.status());
      return next;
    },
    'models.import': async ({ path: p, mode }) => {
      const m = await models.importModel(p, mode, path.join(opts.dataDir, 'models', 'imported'));
      hub.emit('models.changed', {});
      return m;
    },
    'downloads.list': () => downloads.list(),
    'downloads.start': ({ url, sha256, filename }) => downloads.start(url, { sha256, filename }),
    'downloads.pause': ({ id }) => downloads.pause(id),
    'downloads.resume': ({ id }) => downloads.resume(id),
    'downloads.cancel': ({ id }) => downloads.cancel(id),
    'downloads.remove': ({ id }) => ({ removed: downloads.remove(id) }),
    'cloud.status': () => cloud.status(),
    'cloud.setKey': ({ key }) => cloudChanged(cloud.setKey(key)),
    'cloud.clearKey': () => cloudChanged(cloud.clearKey()),
    'cloud.estimate': ({ model, size, quality, n }) => cloud.estimate(model, size, quality, n),
    'history.list': (q) => history.list(q),
    'history.count': (q) => history.count(q),
    'history.get': ({ id }) => history.get(id),
    'history.facets': () => history.facets(),
    'history.setFavorite': ({ ids, favorite }) => {
      const updated = history.setFavorite(ids, favorite);
      hub.emit('history.changed', { ids });
      return { updated };
    },
    'history.export': ({ id, format }) => exportGeneration(history, models, id, format),
    'history.readMetadata': ({ png }) => readImageMetadata(history, Buffer.from(png, 'base64')),
    'boards.list': () => history.listBoards(),
    'boards.create': ({ name }) => boardChanged(history.createBoard(name)),
    'boards.rename': ({ id, name }) => boardChanged(history.renameBoard(id, name)),
    'boards.delete': ({ id }) => boardChanged({ deleted: history.deleteBoard(id) }),
    'boards.add': ({ id, generationIds }) => boardChanged(history.addToBoard(id, generationIds)),
    'boards.remove': ({ id, generationIds }) => boardChanged(history.removeFromBoard(id, generationIds)),
    'boards.export': ({ id, folder }) => exportBoard(history, id, folder),
    'history.delete': ({ ids }) => {
      const deleted = history.delete(ids);
      hub.emit('history.deleted', { ids });
      return { deleted };
    },
    'models.list': () => models.list(),
    'models.rescan': () => models.rescan(),
    'runtime.status': () => runtime.status(),
    'runtime.provision': ({ repair }) => {
      runtime.provision(repair).then(() => runtime.ensureStarted()).catch(() => {});
      return runtime.status();
    },
    'runtime.restart': () => runtime.restart(),
    'jobs.submit': (params) => jobs.submit(params),
    'jobs.submitMany': ({ items }) => jobs.submitMany(items),
    'jobs.move': ({ id, index }) => jobs.move(id, index),
    'jobs.retry': ({ id }) => jobs.retry(id),
    'jobs.cancel': async ({ id }) => ({ cancelled: await jobs.cancel(id) }),
    'jobs.list': () => jobs.list(),
    'datasets.list': () => datasets.list(),
    'datasets.get': ({ id }) => datasets.get(id),
    'datasets.create': ({ name, trigger }) => datasets.create(name, trigger),
    'datasets.update': ({ id, ...patch }) => datasets.update(id, patch),
    'datasets.delete': ({ id }) => ({ deleted: datasets.delete(id) }),
    'datasets.importFolder': ({ id, folder }) => datasets.importFolder(id, folder),
    'datasets.addFiles': ({ id, files }) => datasets.addFiles(id, files),
    'datasets.setCaption': ({ id, file, caption }) => datasets.setCaption(id, file, caption),
    'datasets.removeImage': ({ id, file }) => datasets.removeImage(id, file),
    'training.preset': ({ modelId }) => training.preset(modelId),
    'training.start': (input) => training.start(input),
    'training.list': () => training.list(),
    'training.get': ({ id }) => training.get(id),
    'training.pause': ({ id }) => training.pause(id),
    'training.resume': ({ id }) => training.resume(id),
    'training.cancel': ({ id }) => training.cancel(id),
    'training.delete': ({ id }) => ({ deleted: training.delete(id) }),
    'assets.put': ({ png }) => history.putAsset(Buffer.from(png, 'base64')),
    'canvas.canny': async ({ image, low, high, width, height }) => {
      const out = path.join(opts.dataDir, 'jobs', `canny-${randomUUID()}.png`);
      try {
        const r = await runtime.canny({ image: history.requireFile(image), low, high, out, ...(width && height ? { width, height } : {}) });
        const asset = history.putAsset(fs.readFileSync(r.path));
        return { ...asset, edgeFraction: r.edge_fraction };
      } finally {
        fs.rmSync(out, { force: true });
      }
    },
  };

  return {
    hub,
    handlers,
    dispatch: createDispatcher(handlers, log),
    history,
    settings,
    models,
    runtime,
    jobs,
    cloud,
    downloads,
    datasets,
    training,
    async dispose() {
      await downloads.dispose(); // transfers stop where they are, resumable
      await runtime.dispose();
      history.close();
    },
  };
}
