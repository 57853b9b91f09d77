import { useEffect, useState } from 'react';
import type { Generation } from '../../../shared/contract';
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

  return (
    <section className="stage" aria-label="Stage">
      {running && (
        <div className="stage-running">
          <div className="preview-frame" style={{ aspectRatio: `${job.params.width} / ${job.params.height}` }}>
            {preview ? <img className="preview" src={preview} alt="Live preview" /> : <div className="preview-placeholder">{job.state === 'queued' ? 'Waiting in the queue…' : 'Starting…'}</div>}
          </div>
          <div className="progress-row">
            <div className="progress" role="progressbar" aria-label="Generation progress" aria-valuemin={0} aria-valuemax={total} aria-valuenow={step}>
              <div className="progress-fill" style={{ width: `${fraction * 100}%` }} />
            </div>
            <span className="progress-text" data-testid="progress-text">
              {job.state === 'queued' ? 'Queued' : `Step ${step} / ${total}${job.params.batch > 1 ? ` · image ${(progress?.image ?? 0) + 1} of ${job.params.batch}` : ''}`}
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
      {job.state === 'done' && result && (
        <div className={`result-grid n${Math.min(result.images.length, 4)}`}>
          {result.images.map((img) => (
            <figure key={img.id}>
              <img src={client.fileUrl(img.path)} alt={`Result, seed ${img.seed}`} data-testid="result-image" />
              <figcaption>
                seed {img.seed} · {img.width}×{img.height} · {((result.timings.total_ms ?? 0) / 1000).toFixed(1)} s
              </figcaption>
            </figure>
          ))}
        </div>
      )}
    </section>
  );
}

export function QueueList() {
  const jobs = useStore((s) => s.jobs);
  const focusJobId = useStore((s) => s.focusJobId);
  const recent = [...jobs].reverse().slice(0, 20);
  return (
    <aside className="queue" aria-label="Queue">
      <h3>Queue</h3>
      {recent.length === 0 && <p className="muted">No jobs yet.</p>}
      <ul>
        {recent.map((j) => (
          <li key={j.id} className={`job ${j.state}${j.id === focusJobId ? ' focused' : ''}`}>
            <button type="button" className="job-main" onClick={() => useStore.setState({ focusJobId: j.id })}>
              <span className={`dot ${j.state}`} aria-hidden />
              <span className="job-prompt">{j.params.prompt}</span>
              <span className="job-state">{j.state === 'running' ? `${j.step}/${j.total}` : j.state}</span>
            </button>
            {(j.state === 'queued' || j.state === 'running') && (
              <button type="button" className="icon small" aria-label="Cancel job" onClick={() => useStore.getState().cancelJob(j.id)}>
                ✕
              </button>
            )}
          </li>
        ))}
      </ul>
    </aside>
  );
}
