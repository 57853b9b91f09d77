import { useEffect, useRef, useState } from 'react';
import type { Generation, Job } from '../../../shared/contract';
import { useStore } from '../../app/store';
import { client } from '../../lib/client';

/** The centre of the Generate screen: the live preview while a job runs, then its images. */
export function Stage() {
  const focusJobId = useStore((s) => s.focusJobId);
  const job = useStore((s) => s.jobs.find((j) => j.id === s.focusJobId) ?? null);
  const progress = useStore((s) => (s.focusJobId ? s.progress[s.focusJobId] : undefined));
  const preview = useStore((s) => (s.focusJobId ? s.previews[s.focusJobId] : undefined));
  const runtime = useStore((s) => s.runtime);
  const [result, setResult] = useState<Generation | null>(null);

  useEffect(() => {
    setResult(null);
    if (job?.generationId) client.call('history.get', { id: job.generationId }).then(setResult, () => setResult(null));
  }, [focusJobId, job?.generationId]);

  if (!job) {
    return (
      <section className="stage empty" aria-label="Stage">
        <div className="stage-hint">
          <h2>Nothing generated yet</h2>
          <p>Write a prompt and press Generate (Ctrl+Enter).</p>
          {runtime && runtime.state !== 'ready' && <p className="muted">Runtime: {runtime.message}</p>}
        </div>
      </section>
    );
  }

  const step = progress?.step ?? job.step;
  const total = progress?.total ?? job.total;
  const fraction = total ? Math.min(1, step / total) : 0;
  const running = job.state === 'running' || job.state === 'queued';
  const cloud = job.params.backend === 'cloud';
  const [cw, ch] = cloud ? (job.params.cloud?.size ?? '1024x1024').split('x').map(Number) : [job.params.width, job.params.height];

  return (
    <section className={`stage${job.state === 'done' && job.cached ? ' is-cached' : ''}`} aria-label="Stage">
      {running && (
        <div className="stage-running">
          <div className="preview-frame" style={{ aspectRatio: `${cw || 1} / ${ch || 1}` }}>
            {preview ? (
              <img className="preview" src={preview} alt="Live preview" />
            ) : (
              <div className="preview-placeholder">{job.state === 'queued' ? 'Waiting in the queue…' : cloud ? (job.note ?? `Waiting for OpenAI (${job.params.modelId})…`) : 'Starting…'}</div>
            )}
          </div>
          <div className="progress-row">
            <div className="progress" role="progressbar" aria-label="Generation progress" aria-valuemin={0} aria-valuemax={total} aria-valuenow={step}>
              <div className="progress-fill" style={{ width: `${fraction * 100}%` }} />
            </div>
            <span className="progress-text" data-testid="progress-text">
              {job.state === 'queued'
                ? 'Queued'
                : cloud
                  ? (job.note ?? `Sent to OpenAI · ${job.params.batch} image${job.params.batch > 1 ? 's' : ''}`)
                  : `Step ${step} / ${total}${job.params.batch > 1 ? ` · image ${(progress?.image ?? 0) + 1} of ${job.params.batch}` : ''}`}
            </span>
            <button type="button" className="danger" onClick={() => useStore.getState().cancelJob(job.id)} title="Cancel (Esc)">
              Cancel
            </button>
          </div>
        </div>
      )}
      {job.state === 'failed' && (
        <div className="stage-error" role="alert">
          <h2>Generation failed</h2>
          <p>{job.error?.message}</p>
          <code>{job.error?.code}</code>
        </div>
      )}
      {job.state === 'cancelled' && (
        <div className="stage-hint">
          <h2>Cancelled</h2>
          <p className="muted">Nothing was saved.</p>
        </div>
      )}
      {job.state === 'done' && result && job.cached && (
        <p className="cached-note" data-testid="stage-cached">
          <span className="state-badge cached">cached</span> An identical request was made before: this is its image from the history, not a new generation. Turn off “Reuse identical results” to generate again.
        </p>
      )}
      {job.state === 'done' && result && (
        <div className={`result-grid n${Math.min(result.images.length, 4)}`}>
          {result.images.map((img) => (
            <figure key={img.id}>
              <img src={client.fileUrl(img.path)} alt={`Result, seed ${img.seed}`} data-testid="result-image" />
              <figcaption>
                {result.backend === 'cloud' ? `${result.modelName} · ${img.width}×${img.height} · $${((result.costUsd ?? 0) / result.images.length).toFixed(3)}` : `seed ${img.seed} · ${img.width}×${img.height}`} ·{' '}
                {job.cached ? 'cached' : `${((result.timings.total_ms ?? 0) / 1000).toFixed(1)} s`}
              </figcaption>
            </figure>
          ))}
        </div>
      )}
    </section>
  );
}

function stateLabel(j: Job): string {
  if (j.state === 'running') return `${j.step}/${j.total}`;
  if (j.state === 'done' && j.cached) return 'cached';
  return j.state;
}

function JobRow({ j, focused, index, queuedCount, dragging, onDragStart, onDropAt }: {
  j: Job;
  focused: boolean;
  /** Place among the queued jobs (-1: not queued). */
  index: number;
  queuedCount: number;
  dragging: boolean;
  onDragStart: (id: string) => void;
  onDropAt: (id: string, before: boolean) => void;
}) {
  const s = useStore.getState;
  const [over, setOver] = useState<'before' | 'after' | null>(null);
  const queued = j.state === 'queued';
  const badge = j.state === 'done' && j.cached ? 'cached' : j.state;
  const size = j.params.backend === 'cloud' ? `${j.params.modelId} · ${(j.params.cloud?.size ?? '').replace('x', '×')}` : `seed ${j.params.seed} · ${j.params.width}×${j.params.height}`;
  const sub = `${size}${j.params.batch > 1 ? ` · ${j.params.batch} images` : ''}`;
  return (
    <li
      className={`job ${j.state}${j.cached ? ' cached' : ''}${focused ? ' focused' : ''}${dragging ? ' dragging' : ''}${over ? ` drop-${over}` : ''}`}
      data-testid="queue-job"
      data-state={badge}
      draggable={queued}
      onDragStart={(e) => {
        if (!queued) return;
        e.dataTransfer.setData('application/x-atelier-job', j.id);
        e.dataTransfer.effectAllowed = 'move';
        onDragStart(j.id);
      }}
      onDragOver={(e) => {
        if (!queued || !e.dataTransfer.types.includes('application/x-atelier-job')) return;
        e.preventDefault();
        e.dataTransfer.dropEffect = 'move';
        const r = e.currentTarget.getBoundingClientRect();
        setOver(e.clientY < r.top + r.height / 2 ? 'before' : 'after');
      }}
      onDragLeave={() => setOver(null)}
      onDrop={(e) => {
        if (!queued) return;
        e.preventDefault();
        const before = over !== 'after';
        setOver(null);
        onDropAt(j.id, before);
      }}
    >
      {queued && (
        <span className="drag-handle" aria-hidden title="Drag to reorder">
          ⋮⋮
        </span>
      )}
      <button type="button" className="job-main" onClick={() => useStore.setState({ focusJobId: j.id })} title={j.params.prompt}>
        <span className={`dot ${j.state}`} aria-hidden />
        <span className="job-text">
          <span className="job-prompt">{j.params.prompt}</span>
          <span className="job-sub">{sub}</span>
        </span>
        {!queued && (
          <span className={`state-badge ${badge}`} data-testid="job-state">
            {stateLabel(j)}
          </span>
        )}
      </button>
      <span className="job-actions">
        {queued && (
          <>
            <button type="button" className="icon small" aria-label="Move up" title="Run earlier" disabled={index <= 0} onClick={() => s().moveJob(j.id, index - 1)}>
              ↑
            </button>
            <button type="button" className="icon small" aria-label="Move down" title="Run later" disabled={index >= queuedCount - 1} onClick={() => s().moveJob(j.id, index + 1)}>
              ↓
            </button>
          </>
        )}
        {(j.state === 'failed' || j.state === 'cancelled') && (
          <button type="button" className="icon small" aria-label="Retry" title={j.error ? `Retry (${j.error.message})` : 'Retry'} onClick={() => s().retryJob(j.id)}>
            ↻
          </button>
        )}
        {(queued || j.state === 'running') && (
          <button type="button" className="icon small" aria-label="Cancel job" title="Cancel" onClick={() => s().cancelJob(j.id)}>
            ✕
          </button>
        )}
      </span>
    </li>
  );
}

/** How many queued jobs the list shows (a 500-job matrix stays light). */
const SHOW_QUEUED = 100;

export function QueueList() {
  const jobs = useStore((s) => s.jobs);
  const focusJobId = useStore((s) => s.focusJobId);
  const dragId = useRef<string | null>(null);
  const [dragging, setDragging] = useState<string | null>(null);
  const running = jobs.filter((j) => j.state === 'running');
  const queued = jobs.filter((j) => j.state === 'queued');
  const finished = jobs.filter((j) => j.state !== 'running' && j.state !== 'queued').reverse().slice(0, 30);

  const dropAt = (targetId: string, before: boolean) => {
    const id = dragId.current;
    dragId.current = null;
    setDragging(null);
    if (!id || id === targetId) return;
    const others = queued.filter((j) => j.id !== id);
    const t = others.findIndex((j) => j.id === targetId);
    if (t < 0) return;
    void useStore.getState().moveJob(id, before ? t : t + 1);
  };
  const row = (j: Job, index: number) => (
    <JobRow
      key={j.id}
      j={j}
      focused={j.id === focusJobId}
      index={index}
      queuedCount={queued.length}
      dragging={dragging === j.id}
      onDragStart={(id) => {
        dragId.current = id;
        setDragging(id);
      }}
      onDropAt={dropAt}
    />
  );

  return (
    <aside className="queue" aria-label="Queue" onDragEnd={() => setDragging(null)}>
      <h3>
        Queue{queued.length > 0 && <span className="queue-count"> · {queued.length} waiting</span>}
      </h3>
      {jobs.length === 0 && <p className="muted">No jobs yet.</p>}
      {jobs.length > 0 && running.length === 0 && queued.length === 0 && <p className="muted small queue-idle">Nothing waiting.</p>}
      {(running.length > 0 || queued.length > 0) && (
        <ul className="queue-active" aria-label="Waiting and running">
          {running.map((j) => row(j, -1))}
          {queued.slice(0, SHOW_QUEUED).map((j, i) => row(j, i))}
        </ul>
      )}
      {queued.length > SHOW_QUEUED && <p className="muted small">and {queued.length - SHOW_QUEUED} more waiting</p>}
      {finished.length > 0 && (
        <>
          <h3 className="queue-recent-head">Recent</h3>
          <ul aria-label="Recent jobs">{finished.map((j) => row(j, -1))}</ul>
        </>
      )}
    </aside>
  );
}
