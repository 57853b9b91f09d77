import { useMemo, useState } from 'react';
import type { TrainingJob, TrainingSample } from '../../../shared/contract';
import { useStore } from '../../app/store';
import { client } from '../../lib/client';
import { ConfirmDialog } from './Dialog';
import { formatDuration, formatNumber, formatRate, jobActions, STATE_LABEL } from './format';
import { LossChart } from './LossChart';

const EMPTY: [number, number][] = [];

export function StateBadge({ state }: { state: TrainingJob['state'] }) {
  return (
    <span className={`state-badge ${state}`} data-testid="training-state">
      {STATE_LABEL[state]}
    </span>
  );
}

function Stat({ k, v, testId }: { k: string; v: React.ReactNode; testId?: string }) {
  return (
    <div className="stat">
      <span className="stat-k">{k}</span>
      <span className="stat-v" data-testid={testId}>
        {v}
      </span>
    </div>
  );
}

function Samples({ samples }: { samples: TrainingSample[] }) {
  const groups = useMemo(() => {
    const by = new Map<number, TrainingSample[]>();
    for (const s of samples) by.set(s.step, [...(by.get(s.step) ?? []), s]);
    return [...by.entries()].sort((a, b) => b[0] - a[0]);
  }, [samples]);
  if (!groups.length) return <p className="muted">No samples yet: they are drawn every “sample every” steps with the sample prompts.</p>;
  return (
    <div className="samples">
      {groups.map(([step, list]) => (
        <section key={step} className="sample-group" aria-label={`Samples at step ${step}`}>
          <h4>Step {step}</h4>
          <div className="sample-row">
            {list.map((s) => (
              <figure key={s.path} className="sample">
                <a href={client.fileUrl(s.path)} target="_blank" rel="noreferrer" title="Open full size">
                  <img src={client.fileUrl(s.path)} alt={`Sample at step ${step}: ${s.prompt}`} data-testid="training-sample" loading="lazy" />
                </a>
                <figcaption title={`${s.prompt} · seed ${s.seed}`}>{s.prompt}</figcaption>
              </figure>
            ))}
          </div>
        </section>
      ))}
    </div>
  );
}

/** One training: live progress, loss curve, samples, and its controls. */
export function JobView() {
  const job = useStore((s) => s.trainingJobs.find((j) => j.id === s.openJobId) ?? null);
  const live = useStore((s) => (s.openJobId ? s.trainProgress[s.openJobId] : undefined));
  const points = useStore((s) => (s.lossCurve && s.lossCurve.jobId === s.openJobId ? s.lossCurve.points : EMPTY));
  const [confirm, setConfirm] = useState<'cancel' | 'delete' | null>(null);

  if (!job) {
    return (
      <section className="job-view" aria-label="Training">
        <p className="muted">Loading…</p>
      </section>
    );
  }

  const running = job.state === 'running';
  const progress = running && live ? live : null;
  const step = progress?.step ?? job.step;
  const total = progress?.total ?? job.total;
  const fraction = total ? Math.min(1, step / total) : 0;
  const acts = jobActions(job.state);
  const s = useStore.getState;
  const c = job.config;
  // Once stopped, the loss shown is the mean of the curve's last points (the live average is gone with the worker).
  const tail = points.slice(-20);
  const tailLoss = tail.length ? tail.reduce((a, p) => a + p[1], 0) / tail.length : null;

  return (
    <section className="job-view" aria-label={`Training ${job.name}`}>
      <header className="job-header">
        <div className="job-title">
          <h2>{job.name}</h2>
          <StateBadge state={job.state} />
        </div>
        <p className="muted small">
          {job.datasetName} · {job.images} {job.images === 1 ? 'image' : 'images'} · on {job.modelName} · rank {c.rank}, alpha {c.alpha}, lr {formatNumber(c.lr)}, batch {c.batch}, {c.resolution} px
        </p>
        <div className="job-actions">
          {job.state === 'done' && job.outputModelId && (
            <button
              type="button"
              className="primary"
              onClick={() => void s().useTrainedLora(job.outputModelId!, job.modelId, job.trigger)}
              title={job.trigger ? `Adds the LoRA at weight 1 and “${job.trigger}” to the prompt` : 'Adds the LoRA at weight 1'}
            >
              Use this LoRA
            </button>
          )}
          <button type="button" disabled={!acts.pause} onClick={() => void s().pauseTraining(job.id)} title="Stop after writing a checkpoint; Resume continues from it">
            Pause
          </button>
          <button type="button" disabled={!acts.resume} onClick={() => void s().resumeTraining(job.id)}>
            Resume
          </button>
          <button type="button" className="danger" disabled={!acts.cancel} onClick={() => setConfirm('cancel')}>
            Cancel
          </button>
          <button type="button" className="danger" disabled={!acts.delete} onClick={() => setConfirm('delete')}>
            Delete
          </button>
        </div>
      </header>

      <div className="progress-row">
        <div className="progress" role="progressbar" aria-label="Training progress" aria-valuemin={0} aria-valuemax={total} aria-valuenow={step}>
          <div className={`progress-fill ${job.state}`} style={{ width: `${fraction * 100}%` }} />
        </div>
        <span className="progress-text" data-testid="training-step">
          Step {step} / {total}
        </span>
      </div>
      <p className={`job-message${job.state === 'failed' ? ' failed' : ''}`} data-testid="training-message" role={job.state === 'failed' ? 'alert' : undefined}>
        {job.phase && running ? <span className="phase">{job.phase}</span> : null}
        {job.state === 'failed' && job.error ? job.error.message : job.message}
      </p>

      <div className="stats">
        <Stat k="Loss (avg)" v={formatNumber(progress?.lossAvg ?? job.loss ?? tailLoss)} testId="training-loss" />
        <Stat k="Learning rate" v={formatNumber(progress?.lr ?? job.lr ?? (running ? null : c.lr), 3)} />
        <Stat k="Speed" v={progress || job.itPerSec ? formatRate(progress?.itPerSec ?? job.itPerSec) : job.state === 'done' && job.seconds > 0 ? `${formatRate(job.step / job.seconds)} avg` : '—'} />
        <Stat k="ETA" v={running ? formatDuration(progress?.etaSec ?? job.etaSec) : '—'} testId="training-eta" />
        <Stat k="Elapsed" v={formatDuration(job.seconds)} />
        <Stat k="Checkpoint" v={job.checkpointStep ? `step ${job.checkpointStep}` : '—'} />
      </div>

      <section className="job-section" aria-label="Loss">
        <h3>Loss</h3>
        <LossChart points={points} total={total} />
      </section>

      <section className="job-section" aria-label="Samples">
        <h3>Samples</h3>
        <Samples samples={job.samples} />
      </section>

      {job.skipped.length > 0 && (
        <section className="job-section" aria-label="Skipped files">
          <h3>Skipped files ({job.skipped.length})</h3>
          <p className="muted small">The worker left these out of the training:</p>
          <ul className="skipped-list">
            {job.skipped.map((f, i) => (
              <li key={`${f.file}-${i}`}>
                <span className="skipped-file">{f.file}</span>
                <span className="skipped-reason">{f.reason}</span>
              </li>
            ))}
          </ul>
        </section>
      )}

      {confirm === 'cancel' && (
        <ConfirmDialog
          title={`Cancel the training “${job.name}”?`}
          text={<p>The training stops for good and its checkpoint is discarded: it cannot be resumed. (Pause keeps it.)</p>}
          confirm="Cancel training"
          onConfirm={() => s().cancelTraining(job.id)}
          onClose={() => setConfirm(null)}
        />
      )}
      {confirm === 'delete' && (
        <ConfirmDialog
          title={`Delete the training “${job.name}”?`}
          text={<p>Its samples, loss curve and checkpoint are deleted.{job.outputModelId ? ' The finished LoRA stays in your model library.' : ''}</p>}
          confirm="Delete training"
          onConfirm={() => s().deleteTraining(job.id)}
          onClose={() => setConfirm(null)}
        />
      )}
    </section>
  );
}
