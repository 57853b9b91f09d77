import { useEffect, useState } from 'react';
import { SAMPLERS, type Sampler } from '../../../shared/contract';
import { useStore } from '../../app/store';

function RuntimeSection() {
  const runtime = useStore((s) => s.runtime);
  const settings = useStore((s) => s.settings);
  const [python, setPython] = useState(settings?.pythonPath ?? '');
  useEffect(() => setPython(settings?.pythonPath ?? ''), [settings?.pythonPath]);
  if (!runtime || !settings) return null;
  const busy = runtime.state === 'provisioning' || runtime.state === 'starting';
  return (
    <section className="settings-section" aria-label="Runtime">
      <h2>Python runtime</h2>
      <p className={`runtime-state ${runtime.state}`} data-testid="runtime-state">
        <span className={`dot ${runtime.state}`} aria-hidden /> {runtime.message}
      </p>
      {runtime.provision && (
        <div className="progress" role="progressbar" aria-label="Runtime installation" aria-valuemin={0} aria-valuemax={1} aria-valuenow={runtime.provision.fraction}>
          <div className="progress-fill" style={{ width: `${runtime.provision.fraction * 100}%` }} />
        </div>
      )}
      <dl className="params">
        <dt>Device</dt>
        <dd>{runtime.devices.length ? runtime.devices.map((d) => `${d.name}${d.vramMb ? ` · ${(d.vramMb / 1024).toFixed(1)} GB` : ''}`).join(', ') : '—'}</dd>
        <dt>Precision</dt>
        <dd>{runtime.device ?? '—'}</dd>
        <dt>Memory mode</dt>
        <dd>{runtime.memoryMode ?? '—'}</dd>
        <dt>Versions</dt>
        <dd>{Object.entries(runtime.versions).map(([k, v]) => `${k} ${v}`).join(' · ') || '—'}</dd>
        <dt>Restarts</dt>
        <dd>{runtime.restarts}</dd>
      </dl>
      <div className="button-row">
        <button type="button" disabled={busy} onClick={() => useStore.getState().provisionRuntime(false)}>
          {runtime.state === 'not_installed' ? 'Install' : 'Check installation'}
        </button>
        <button type="button" disabled={busy} onClick={() => useStore.getState().provisionRuntime(true)} title="Delete the runtime's environment and build it again">
          Repair
        </button>
        <button type="button" disabled={busy} onClick={() => useStore.getState().restartRuntime()}>
          Restart worker
        </button>
      </div>
      <label className="field">
        <span className="field-label">
          Python interpreter <span className="hint">empty: Atelier builds its own environment</span>
        </span>
        <div className="seed-row">
          <input name="pythonPath" value={python} placeholder="/path/to/venv/bin/python" onChange={(e) => setPython(e.target.value)} />
          <button type="button" onClick={() => useStore.getState().updateSettings({ pythonPath: python.trim() })}>
            Use
          </button>
        </div>
      </label>
      <label className="field">
        <span className="field-label">Memory mode</span>
        <select
          name="memoryMode"
          value={settings.memoryMode}
          onChange={(e) => useStore.getState().updateSettings({ memoryMode: e.target.value as typeof settings.memoryMode })}
        >
          <option value="auto">Automatic (from the GPU's memory)</option>
          <option value="normal">Normal: everything on the GPU</option>
          <option value="low">Low: attention slicing, VAE tiling</option>
          <option value="minimal">Minimal: CPU offload (slow, for 4 GB cards)</option>
        </select>
      </label>
      <label className="field">
        <span className="field-label">
          Live preview every N steps <span className="hint">0 turns previews off</span>
        </span>
        <input
          type="number"
          name="previewEvery"
          min={0}
          max={50}
          value={settings.previewEvery}
          onChange={(e) => useStore.getState().updateSettings({ previewEvery: Number(e.target.value) })}
        />
      </label>
    </section>
  );
}

function ModelsSection() {
  const settings = useStore((s) => s.settings);
  const models = useStore((s) => s.models);
  const [dir, setDir] = useState('');
  if (!settings) return null;
  const dirs = settings.modelDirs;
  return (
    <section className="settings-section" aria-label="Models">
      <h2>Models</h2>
      <p className="muted">Folders scanned for .safetensors checkpoints and diffusers folders (an A1111 or ComfyUI models folder works in place).</p>
      <ul className="dir-list">
        {dirs.map((d) => (
          <li key={d}>
            <code>{d}</code>
            <button type="button" className="icon small" aria-label={`Remove ${d}`} onClick={() => useStore.getState().updateSettings({ modelDirs: dirs.filter((x) => x !== d) })}>
              ✕
            </button>
          </li>
        ))}
      </ul>
      <form
        className="seed-row"
        onSubmit={async (e) => {
          e.preventDefault();
          const d = dir.trim();
          if (d && !dirs.includes(d) && (await useStore.getState().updateSettings({ modelDirs: [...dirs, d] }))) setDir('');
        }}
      >
        <input name="modelDir" placeholder="/path/to/models" value={dir} onChange={(e) => setDir(e.target.value)} />
        <button type="submit">Add folder</button>
        <button type="button" onClick={() => useStore.getState().loadModels(true)}>
          Rescan
        </button>
      </form>
      <table className="models-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Kind</th>
            <th>Family</th>
            <th>Format</th>
            <th>Size</th>
          </tr>
        </thead>
        <tbody>
          {models.map((m) => (
            <tr key={m.id} title={m.path}>
              <td>{m.name}</td>
              <td>{m.kind}</td>
              <td>{m.family}</td>
              <td>{m.format}</td>
              <td>{(m.sizeBytes / 1024 / 1024).toFixed(1)} MB</td>
            </tr>
          ))}
          {models.length === 0 && (
            <tr>
              <td colSpan={5} className="muted">
                No models found.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </section>
  );
}

function DefaultsSection() {
  const settings = useStore((s) => s.settings);
  if (!settings) return null;
  const d = settings.defaults;
  const update = (patch: Partial<typeof d>) => useStore.getState().updateSettings({ defaults: { ...d, ...patch } });
  return (
    <section className="settings-section" aria-label="Defaults">
      <h2>Defaults for new sessions</h2>
      <div className="row">
        <label className="field">
          <span className="field-label">Sampler</span>
          <select value={d.sampler} onChange={(e) => update({ sampler: e.target.value as Sampler })}>
            {SAMPLERS.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </label>
        <label className="field">
          <span className="field-label">Steps</span>
          <input type="number" min={1} max={200} value={d.steps} onChange={(e) => update({ steps: Number(e.target.value) })} />
        </label>
        <label className="field">
          <span className="field-label">CFG</span>
          <input type="number" min={0} max={30} step={0.5} value={d.cfg} onChange={(e) => update({ cfg: Number(e.target.value) })} />
        </label>
      </div>
    </section>
  );
}

export function SettingsPage() {
  const info = useStore((s) => s.appInfo);
  return (
    <div className="settings-page">
      <h1>Settings</h1>
      <RuntimeSection />
      <ModelsSection />
      <DefaultsSection />
      {info && (
        <p className="muted about">
          Atelier {info.version} · {info.shell === 'web' ? 'web mode' : 'desktop'} · library at <code>{info.dataDir}</code>
        </p>
      )}
    </div>
  );
}
