import { useEffect } from 'react';
import { CanvasPage, loadImage } from '../features/canvas/CanvasPage';
import { GalleryPage } from '../features/gallery/GalleryPage';
import { GeneratePanel } from '../features/generate/GeneratePanel';
import { QueueList, Stage } from '../features/jobs/Stage';
import { SettingsPage } from '../features/settings/SettingsPage';
import { FirstRun } from '../features/firstrun/FirstRun';
import { TrainingPage } from '../features/training/TrainingPage';
import { useWindowImageDrop } from './recall';
import { useStore, type AppState } from './store';
import type { Route } from './uiSlice';

const NAV: { route: Route; label: string; icon: string; key: string }[] = [
  { route: 'generate', label: 'Generate', icon: '✦', key: '1' },
  { route: 'canvas', label: 'Canvas', icon: '◩', key: '2' },
  { route: 'gallery', label: 'Gallery', icon: '▦', key: '3' },
  { route: 'training', label: 'Train', icon: '◎', key: '5' },
  { route: 'settings', label: 'Settings', icon: '⚙', key: '4' },
];

function StatusBar() {
  const runtime = useStore((s) => s.runtime);
  const connected = useStore((s) => s.connected);
  const running = useStore((s) => s.jobs.filter((j) => j.state === 'running' || j.state === 'queued').length);
  return (
    <footer className="statusbar">
      {!connected && <span className="status-warn">Disconnected from Atelier, reconnecting…</span>}
      <span className={`dot ${runtime?.state ?? 'stopped'}`} aria-hidden />
      <span data-testid="status-runtime">{runtime ? runtime.message : 'Connecting…'}</span>
      {running > 0 && <span className="muted">· {running} in queue</span>}
    </footer>
  );
}

function Toasts() {
  const toasts = useStore((s) => s.toasts);
  return (
    <div className="toasts" aria-live="polite">
      {toasts.map((t) => (
        <div key={t.id} className={`toast ${t.kind}`} role={t.kind === 'error' ? 'alert' : 'status'}>
          <span>{t.text}</span>
          <button type="button" className="icon small" aria-label="Dismiss" onClick={() => useStore.getState().dismissToast(t.id)}>
            ✕
          </button>
        </div>
      ))}
    </div>
  );
}

/** What a dropped PNG restored, where it came from, and what it could not restore. */
function RecallPanel() {
  const recall = useStore((s) => s.recall);
  if (!recall) return null;
  return (
    <section className="recall-panel" role="status" aria-label="Restored settings" data-testid="recall-panel">
      <div className="recall-head">
        <strong>
          Settings from {recall.source === 'no metadata' ? 'a PNG without metadata' : `an ${recall.source} PNG`}
        </strong>
        <button type="button" className="icon small" aria-label="Dismiss" onClick={() => useStore.getState().dismissRecall()}>
          ✕
        </button>
      </div>
      <p className="muted small recall-file">{recall.file}</p>
      {recall.restored.length > 0 ? <p>Restored: {recall.restored.join(', ')}.</p> : <p>Nothing could be restored.</p>}
      {recall.notes.length > 0 && (
        <ul className="recall-notes" aria-label="Not restored">
          {recall.notes.map((n, i) => (
            <li key={i}>{n}</li>
          ))}
        </ul>
      )}
    </section>
  );
}

function useShortcuts() {
  useEffect(() => {
    const onKey = (e: KeyboardEvent) => {
      const s: AppState = useStore.getState();
      const mod = e.ctrlKey || e.metaKey;
      if (mod && e.key === 'Enter') {
        // On the Train page Ctrl+Enter belongs to the caption being edited, never to a generation.
        if (s.route === 'training') return;
        e.preventDefault();
        if (s.route === 'canvas') void s.submitCanvas(loadImage);
        else {
          if (s.route !== 'generate') s.go('generate');
          void s.submit();
        }
      } else if (mod && !e.altKey && !e.shiftKey && NAV.some((n) => n.key === e.key)) {
        e.preventDefault();
        s.go(NAV.find((n) => n.key === e.key)!.route);
      } else if (e.key === 'Escape' && (s.route === 'generate' || (s.route === 'canvas' && !s.staged))) {
        const running = s.jobs.find((j) => j.state === 'running');
        if (running) void s.cancelJob(running.id);
      }
    };
    window.addEventListener('keydown', onKey);
    return () => window.removeEventListener('keydown', onKey);
  }, []);
}

export function App() {
  const route = useStore((s) => s.route);
  const dropping = useWindowImageDrop();
  useShortcuts();
  return (
    <div className="app">
      <nav className="sidebar" aria-label="Main">
        <div className="brand" title="Atelier">
          A
        </div>
        {NAV.map((n) => (
          <button
            key={n.route}
            type="button"
            className={route === n.route ? 'nav active' : 'nav'}
            aria-current={route === n.route ? 'page' : undefined}
            title={`${n.label} (Ctrl+${n.key})`}
            onClick={() => useStore.getState().go(n.route)}
          >
            <span className="nav-icon" aria-hidden>
              {n.icon}
            </span>
            <span className="nav-label">{n.label}</span>
          </button>
        ))}
      </nav>
      <main className="main">
        {route === 'generate' && (
          <div className="generate-page">
            <GeneratePanel />
            <Stage />
            <QueueList />
          </div>
        )}
        {route === 'canvas' && (
          <div className="canvas-layout">
            <GeneratePanel variant="canvas" />
            <CanvasPage />
          </div>
        )}
        {route === 'gallery' && <GalleryPage />}
        {route === 'training' && <TrainingPage />}
        {route === 'settings' && <SettingsPage />}
      </main>
      <StatusBar />
      <FirstRun />
      <Toasts />
      <RecallPanel />
      {dropping && (
        <div className="recall-drop" aria-hidden>
          <div>Drop a PNG to restore the settings it was made with</div>
        </div>
      )}
    </div>
  );
}
