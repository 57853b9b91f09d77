import { createRoot } from 'react-dom/client';
import { App } from './app/App';
import { useStore } from './app/store';
import { client } from './lib/client';
import './styles.css';

/** Wire contract events into the store once, then render. */
function connect() {
  const s = useStore.getState;
  client.on('jobs.changed', (job) => {
    s().applyJob(job);
    if (job.state === 'failed') s().toast('error', job.error?.message ?? 'The generation failed.');
    if (s().canvasJobIds.includes(job.id)) {
      if (job.state === 'done' && job.generationId) void client.call('history.get', { id: job.generationId }).then((g) => s().stageResult(job.id, g));
      else if (job.state === 'failed' || job.state === 'cancelled') useStore.setState((st) => ({ canvasJobIds: st.canvasJobIds.filter((id) => id !== job.id) }));
    }
  });
  client.on('jobs.progress', (p) => s().applyProgress(p));
  client.on('runtime.changed', (r) => s().setRuntime(r));
  client.on('history.added', ({ generationId }) => {
    void s().onHistoryAdded(generationId);
    if (s().route === 'gallery') void s().loadFacets();
  });
  client.on('history.deleted', ({ ids }) => s().onHistoryDeleted(ids));
  client.on('history.changed', ({ ids }) => void s().onHistoryChanged(ids));
  client.on('boards.changed', () => void s().loadBoards());
  client.on('settings.changed', (settings) => useStore.setState({ settings }));
  client.on('cloud.changed', (cloudStatus) => useStore.setState({ cloudStatus }));
  client.on('downloads.changed', (d) => {
    const before = s().downloads.find((x) => x.id === d.id);
    s().applyDownload(d);
    if (before && before.state !== d.state) {
      if (d.state === 'done') s().toast('info', `${d.filename} downloaded, verified and added to the library.`);
      else if (d.state === 'failed') s().toast('error', `${d.filename}: ${d.error?.message ?? 'the download failed'}`);
    }
  });
  client.on('models.changed', () => void s().loadModels().catch(() => {}));
  client.on('datasets.changed', ({ id }) => s().onDatasetChanged(id));
  client.on('training.changed', (job) => {
    const before = s().trainingJobs.find((j) => j.id === job.id);
    s().applyTrainingJob(job);
    if (before && before.state !== job.state) {
      if (job.state === 'done') s().toast('info', `Training ${job.name} finished: the LoRA is in the library.`);
      else if (job.state === 'failed') s().toast('error', `Training ${job.name} failed: ${job.error?.message ?? job.message}`);
    }
  });
  client.on('training.progress', (p) => s().applyTrainingProgress(p));
  client.onConnection((connected) => {
    useStore.setState({ connected });
    if (connected) void load();
  });
}

async function load() {
  const s = useStore.getState();
  try {
    await s.loadSettings();
    // The welcome guide, until it is done (it never blocks: "Later" closes it).
    if (!useStore.getState().settings?.firstRunDone) s.openFirstRun();
    await Promise.all([s.loadModels(), s.loadGallery(true), s.loadBoards(), s.loadJobs(), s.loadDatasets(), s.loadTraining(), s.loadCloud(), s.loadDownloads()]);
  } catch (err) {
    s.toast('error', `Could not load: ${(err as Error).message}`);
  }
}

connect();
// Electron has no connection events; the web transport loads on its first (and every re-) connect.
if (window.atelier) void load();
createRoot(document.getElementById('root')!).render(<App />);
