import { useState } from 'react';
import { useStore } from '../../app/store';
import { client } from '../../lib/client';
import { DatasetView } from './DatasetView';
import { Dialog } from './Dialog';
import { JobView, StateBadge } from './JobView';
import { TrainForm } from './TrainForm';

function NewDatasetDialog({ onClose }: { onClose: () => void }) {
  const [name, setName] = useState('');
  const [trigger, setTrigger] = useState('');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  return (
    <Dialog title="New dataset" onClose={onClose}>
      <form
        onSubmit={async (e) => {
          e.preventDefault();
          setBusy(true);
          try {
            await useStore.getState().createDataset(name, trigger);
            onClose();
          } catch (err) {
            setError((err as Error).message.replace(/^Invalid datasets\.create request: /, ''));
          } finally {
            setBusy(false);
          }
        }}
      >
        <label className="field">
          <span className="field-label">Name</span>
          <input name="newDatasetName" value={name} maxLength={120} placeholder="e.g. Pink hearts" onChange={(e) => setName(e.target.value)} />
        </label>
        <label className="field">
          <span className="field-label">
            Trigger word <span className="hint">optional: a rare word that will call up the LoRA</span>
          </span>
          <input name="newDatasetTrigger" value={trigger} maxLength={60} placeholder="e.g. pnkhrt" onChange={(e) => setTrigger(e.target.value)} />
        </label>
        {error && (
          <p className="field-error" role="alert">
            {error}
          </p>
        )}
        <div className="dialog-actions">
          <button type="button" onClick={onClose}>
            Cancel
          </button>
          <button type="submit" className="primary" disabled={busy || !name.trim()}>
            Create
          </button>
        </div>
      </form>
    </Dialog>
  );
}

function DatasetList({ onNew }: { onNew: () => void }) {
  const datasets = useStore((s) => s.datasets);
  const datasetId = useStore((s) => s.datasetId);
  const view = useStore((s) => s.trainingView);
  return (
    <section className="tr-list" aria-label="Datasets">
      <div className="tr-list-head">
        <h3>Datasets</h3>
        <button type="button" className="small-button" onClick={onNew}>
          New dataset
        </button>
      </div>
      {datasets.length === 0 && <p className="muted small">No datasets yet. A dataset is 20-50 images of one subject or style, each with a caption.</p>}
      <ul>
        {datasets.map((d) => (
          <li key={d.id}>
            <button
              type="button"
              className={`tr-item${d.id === datasetId && view === 'dataset' ? ' active' : ''}`}
              aria-current={d.id === datasetId && view === 'dataset' ? 'true' : undefined}
              onClick={() => void useStore.getState().selectDataset(d.id)}
            >
              <span className="tr-cover">{d.cover ? <img src={client.fileUrl(d.cover)} alt="" loading="lazy" /> : <span aria-hidden>◌</span>}</span>
              <span className="tr-item-text">
                <span className="tr-item-name">{d.name}</span>
                <span className="tr-item-sub">
                  {d.imageCount} {d.imageCount === 1 ? 'image' : 'images'}
                  {d.trigger ? ` · ${d.trigger}` : ''}
                </span>
              </span>
            </button>
          </li>
        ))}
      </ul>
    </section>
  );
}

function JobList() {
  const jobs = useStore((s) => s.trainingJobs);
  const openJobId = useStore((s) => s.openJobId);
  const view = useStore((s) => s.trainingView);
  const progress = useStore((s) => s.trainProgress);
  const sorted = [...jobs].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  return (
    <section className="tr-list" aria-label="Trainings">
      <div className="tr-list-head">
        <h3>Trainings</h3>
      </div>
      {sorted.length === 0 && <p className="muted small">No trainings yet.</p>}
      <ul>
        {sorted.map((j) => {
          const p = j.state === 'running' ? progress[j.id] : undefined;
          return (
            <li key={j.id}>
              <button
                type="button"
                className={`tr-item job-item${j.id === openJobId && view === 'job' ? ' active' : ''}`}
                aria-current={j.id === openJobId && view === 'job' ? 'true' : undefined}
                onClick={() => void useStore.getState().openTrainingJob(j.id)}
              >
                <span className="tr-item-text">
                  <span className="tr-item-name">{j.name}</span>
                  <span className="tr-item-sub">
                    {j.datasetName} · {p?.step ?? j.step}/{p?.total ?? j.total}
                  </span>
                </span>
                <StateBadge state={j.state} />
              </button>
            </li>
          );
        })}
      </ul>
    </section>
  );
}

/** The Train page: datasets and trainings on the left; the open dataset with the train form, or the open training. */
export function TrainingPage() {
  const view = useStore((s) => s.trainingView);
  const datasetId = useStore((s) => s.datasetId);
  const loaded = useStore((s) => s.datasetsLoaded);
  const count = useStore((s) => s.datasets.length);
  const [creating, setCreating] = useState(false);
  return (
    <div className="training-page">
      <nav className="tr-side" aria-label="Datasets and trainings">
        <DatasetList onNew={() => setCreating(true)} />
        <JobList />
      </nav>
      {view === 'job' ? (
        <JobView />
      ) : datasetId ? (
        <div className="dataset-layout">
          <DatasetView />
          <TrainForm />
        </div>
      ) : (
        <div className="stage-hint tr-empty">
          <h2>{loaded && count === 0 ? 'Train a LoRA on your own images' : 'Choose a dataset'}</h2>
          <p className="muted">
            Create a dataset, add 20-50 images of one subject or style with a caption each, pick a base model, and start training. The finished LoRA lands in your model library, ready for the Generate page.
          </p>
          {loaded && count === 0 && (
            <button type="button" className="primary" onClick={() => setCreating(true)}>
              New dataset
            </button>
          )}
        </div>
      )}
      {creating && <NewDatasetDialog onClose={() => setCreating(false)} />}
    </div>
  );
}
