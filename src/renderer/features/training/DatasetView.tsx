import { memo, useEffect, useRef, useState } from 'react';
import type { Dataset, DatasetImage } from '../../../shared/contract';
import { useStore } from '../../app/store';
import { client } from '../../lib/client';
import { ConfirmDialog } from './Dialog';

type SaveState = 'idle' | 'dirty' | 'saving' | 'saved' | 'error';

const SAVE_LABEL: Record<SaveState, string> = { idle: '', dirty: 'Unsaved', saving: 'Saving…', saved: 'Saved', error: 'Not saved' };

/** One image of the dataset with its caption: saved on blur and on Ctrl+Enter. */
const ImageCard = memo(function ImageCard({ img }: { img: DatasetImage }) {
  const [draft, setDraft] = useState(img.caption);
  const [state, setState] = useState<SaveState>('idle');
  const [error, setError] = useState('');
  const focused = useRef(false);
  const saved = useRef(img.caption);

  // The folder is the truth: a caption changed elsewhere shows here unless this one is being edited.
  useEffect(() => {
    saved.current = img.caption;
    if (!focused.current && state !== 'dirty' && state !== 'saving') setDraft(img.caption);
  }, [img.caption]);

  useEffect(() => {
    if (state !== 'saved') return;
    const t = setTimeout(() => setState('idle'), 2500);
    return () => clearTimeout(t);
  }, [state]);

  const save = async () => {
    const text = draft;
    if (text.trim() === saved.current.trim()) {
      if (state === 'dirty') setState('idle');
      return;
    }
    setState('saving');
    try {
      const clean = await useStore.getState().setDatasetCaption(img.file, text);
      saved.current = clean;
      setDraft((d) => (d === text ? clean : d));
      setState('saved');
      setError('');
    } catch (err) {
      setState('error');
      setError((err as Error).message);
    }
  };

  return (
    <li className="ds-card" data-testid="dataset-image" data-file={img.file}>
      <div className="ds-thumb">
        <img src={client.fileUrl(img.path)} alt={img.file} loading="lazy" decoding="async" />
        <button
          type="button"
          className="icon small ds-remove"
          aria-label={`Remove ${img.file}`}
          title="Remove from the dataset (the image and its caption file)"
          onClick={() => void useStore.getState().removeDatasetImage(img.file)}
        >
          ✕
        </button>
      </div>
      <div className="ds-meta">
        <span className="ds-file" title={img.file}>
          {img.file}
        </span>
        <span className="hint">
          {img.width}×{img.height}
        </span>
      </div>
      <textarea
        className="ds-caption"
        aria-label={`Caption of ${img.file}`}
        rows={3}
        value={draft}
        placeholder="No caption yet"
        onFocus={() => (focused.current = true)}
        onChange={(e) => {
          setDraft(e.target.value);
          setState('dirty');
        }}
        onBlur={() => {
          focused.current = false;
          void save();
        }}
        onKeyDown={(e) => {
          if ((e.ctrlKey || e.metaKey) && e.key === 'Enter') {
            e.preventDefault();
            e.stopPropagation();
            void save();
          } else if (e.key === 'Escape' && state === 'dirty') {
            e.stopPropagation();
            setDraft(saved.current);
            setState('idle');
          }
        }}
      />
      <div className="ds-caption-foot">
        <span className={`save-state ${state}`} data-testid="caption-state" role={state === 'error' ? 'alert' : undefined} title={error || undefined}>
          {state === 'error' ? `Not saved: ${error}` : SAVE_LABEL[state]}
        </span>
      </div>
    </li>
  );
});

function DatasetHeader({ dataset }: { dataset: Dataset }) {
  const [name, setName] = useState(dataset.name);
  const [trigger, setTrigger] = useState(dataset.trigger);
  const [error, setError] = useState('');
  const [confirm, setConfirm] = useState(false);
  useEffect(() => {
    setName(dataset.name);
    setTrigger(dataset.trigger);
    setError('');
  }, [dataset.id, dataset.name, dataset.trigger]);
  const dirty = name !== dataset.name || trigger !== dataset.trigger;
  const save = async () => {
    if (!dirty) return;
    try {
      await useStore.getState().updateDataset({ name, trigger });
      setError('');
    } catch (err) {
      setError((err as Error).message.replace(/^Invalid datasets\.update request: /, ''));
    }
  };
  const n = dataset.images.length;
  const captioned = dataset.images.filter((i) => i.caption).length;
  return (
    <header className="ds-header">
      <form
        className="ds-edit"
        aria-label="Dataset"
        onSubmit={(e) => {
          e.preventDefault();
          void save();
        }}
      >
        <label className="field">
          <span className="field-label">Dataset name</span>
          <input name="datasetName" value={name} maxLength={120} onChange={(e) => setName(e.target.value)} />
        </label>
        <label className="field">
          <span className="field-label">
            Trigger word
          </span>
          <input name="datasetTrigger" value={trigger} maxLength={60} placeholder="a rare word that calls up the LoRA" onChange={(e) => setTrigger(e.target.value)} />
        </label>
        <div className="ds-edit-actions">
          <button type="submit" disabled={!dirty}>
            Save
          </button>
          {dirty && (
            <button
              type="button"
              onClick={() => {
                setName(dataset.name);
                setTrigger(dataset.trigger);
                setError('');
              }}
            >
              Revert
            </button>
          )}
          <button type="button" className="danger" onClick={() => setConfirm(true)}>
            Delete dataset
          </button>
        </div>
      </form>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      <p className={`ds-count${n < 20 ? ' few' : ''}`} data-testid="dataset-count">
        {n} {n === 1 ? 'image' : 'images'} · 20-50 recommended
        {n > 0 && (
          <span className="muted">
            {' '}
            · {captioned} captioned{n - captioned > 0 ? `, ${n - captioned} without a caption` : ''}
          </span>
        )}
      </p>
      {confirm && (
        <ConfirmDialog
          title={`Delete the dataset “${dataset.name}”?`}
          text={
            <p>
              Its {n} {n === 1 ? 'image' : 'images'} and captions are deleted from Atelier’s library (the files you imported them from are not touched). LoRAs already trained on it stay.
            </p>
          }
          confirm="Delete dataset"
          onConfirm={() => useStore.getState().deleteDataset(dataset.id)}
          onClose={() => setConfirm(false)}
        />
      )}
    </header>
  );
}

function ImportBar() {
  const upload = useStore((s) => s.upload);
  const input = useRef<HTMLInputElement>(null);
  const [folder, setFolder] = useState('');
  const busy = !!upload;
  return (
    <div className="ds-import">
      <button type="button" className="primary" disabled={busy} onClick={() => input.current?.click()}>
        Add images
      </button>
      <input
        ref={input}
        type="file"
        multiple
        accept="image/*,.txt"
        hidden
        data-testid="dataset-file-input"
        onChange={(e) => {
          const files = [...(e.target.files ?? [])];
          e.target.value = '';
          void useStore.getState().addDatasetFiles(files);
        }}
      />
      <form
        className="ds-folder"
        aria-label="Import folder"
        onSubmit={(e) => {
          e.preventDefault();
          if (folder.trim()) void useStore.getState().importDatasetFolder(folder.trim());
        }}
      >
        <input name="importFolder" aria-label="Folder to import" placeholder="/path/to/folder with images and .txt captions" value={folder} onChange={(e) => setFolder(e.target.value)} />
        <button type="submit" disabled={busy || !folder.trim()}>
          Import folder
        </button>
      </form>
    </div>
  );
}

function UploadStatus() {
  const upload = useStore((s) => s.upload);
  if (!upload) return null;
  const fraction = upload.total ? upload.done / upload.total : 0;
  return (
    <div className="ds-upload" role="status" aria-label="Import progress">
      {upload.total > 0 ? (
        <>
          <div className="progress" role="progressbar" aria-label="Files added" aria-valuemin={0} aria-valuemax={upload.total} aria-valuenow={upload.done}>
            <div className="progress-fill" style={{ width: `${fraction * 100}%` }} />
          </div>
          <span className="progress-text">
            {upload.phase} · {upload.done} of {upload.total} files
          </span>
        </>
      ) : (
        <span className="progress-text">{upload.phase}…</span>
      )}
    </div>
  );
}

function ImportReportView() {
  const report = useStore((s) => s.importReport);
  const datasetId = useStore((s) => s.datasetId);
  if (!report || report.datasetId !== datasetId) return null;
  const { added, skipped, captions, error } = report;
  return (
    <section className={`import-report${skipped.length || error ? ' warn' : ''}`} aria-label="Import result">
      <div className="import-report-head">
        <strong>
          {error
            ? `Nothing imported from ${report.source}`
            : `Added ${added.length} ${added.length === 1 ? 'image' : 'images'} from ${report.source}${captions.length ? `, ${captions.length} ${captions.length === 1 ? 'caption' : 'captions'} updated` : ''}`}
          {!error && skipped.length > 0 && ` · ${skipped.length} skipped`}
        </strong>
        <button type="button" className="icon small" aria-label="Dismiss the import result" onClick={() => useStore.getState().dismissImportReport()}>
          ✕
        </button>
      </div>
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      {skipped.length > 0 && (
        <div role="alert" aria-label="Skipped files">
          <p className="muted small">
            {skipped.length === 1 ? 'This file was' : 'These files were'} left out (the rest were added):
          </p>
          <ul className="skipped-list" data-testid="skipped-files">
            {skipped.map((s, i) => (
              <li key={`${s.file}-${i}`}>
                <span className="skipped-file">{s.file}</span>
                <span className="skipped-reason">{s.reason}</span>
              </li>
            ))}
          </ul>
        </div>
      )}
    </section>
  );
}

/** The open dataset: its name and trigger, imports, and the images with their captions (a drop zone for files). */
export function DatasetView() {
  const dataset = useStore((s) => s.dataset);
  const datasetId = useStore((s) => s.datasetId);
  const [over, setOver] = useState(false);
  const depth = useRef(0);

  if (!datasetId) return null;
  if (!dataset || dataset.id !== datasetId) {
    return (
      <section className="ds-view" aria-label="Dataset">
        <p className="muted">Loading the dataset…</p>
      </section>
    );
  }

  return (
    <section
      className={`ds-view${over ? ' drop-over' : ''}`}
      aria-label={`Dataset ${dataset.name}`}
      onDragEnter={(e) => {
        if (!e.dataTransfer.types.includes('Files')) return;
        e.preventDefault();
        depth.current++;
        setOver(true);
      }}
      onDragOver={(e) => {
        if (!e.dataTransfer.types.includes('Files')) return;
        e.preventDefault();
        e.dataTransfer.dropEffect = 'copy';
      }}
      onDragLeave={() => {
        depth.current = Math.max(0, depth.current - 1);
        if (!depth.current) setOver(false);
      }}
      onDrop={(e) => {
        e.preventDefault();
        depth.current = 0;
        setOver(false);
        const files = [...e.dataTransfer.files];
        if (files.length) void useStore.getState().addDatasetFiles(files);
      }}
    >
      <DatasetHeader dataset={dataset} />
      <ImportBar />
      <UploadStatus />
      <ImportReportView />
      {dataset.images.length === 0 ? (
        <div className="drop-zone" data-testid="drop-zone">
          <strong>Drop images here</strong>
          <span className="muted">PNG, JPEG, WebP or BMP, with kohya-style captions: a .txt file of the same name beside each image.</span>
          <span className="muted">Or use “Add images”, or import a folder by its path.</span>
        </div>
      ) : (
        <>
          <p className="drop-hint muted small">Drop more images (and .txt captions) anywhere here. Captions save when you leave the field or press Ctrl+Enter.</p>
          <ul className="ds-grid" aria-label="Images">
            {dataset.images.map((img) => (
              <ImageCard key={img.file} img={img} />
            ))}
          </ul>
        </>
      )}
      {over && (
        <div className="drop-overlay" aria-hidden>
          Drop to add to “{dataset.name}”
        </div>
      )}
    </section>
  );
}
