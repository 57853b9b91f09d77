import { useEffect, useRef, useState } from 'react';
import { formatUsd } from '../../../shared/cloud';
import { SAMPLERS, type Sampler } from '../../../shared/contract';
import { parseBlockedTerms } from '../../../shared/prompts';
import { useStore } from '../../app/store';
import { client } from '../../lib/client';
import { formatBytes, formatEta } from '../models/format';
import { PRESET_LABEL, PRESET_NAMES, type PresetName } from '../../../shared/presets';
import { useChosenModelPresets } from '../generate/usePresets';

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
            <button type="button" className="icon small" aria-label={`Remove ${d}`} onClick={() => void useStore.getState().removeModelDir(d)}>
              ✕
            </button>
          </li>
        ))}
      </ul>
      <form
        className="seed-row"
        onSubmit={async (e) => {
          e.preventDefault();
          if (await useStore.getState().addModelDir(dir)) setDir('');
        }}
      >
        <input name="modelDir" placeholder="/path/to/models" value={dir} onChange={(e) => setDir(e.target.value)} />
        <button type="submit">Add folder</button>
        <button type="button" onClick={() => useStore.getState().loadModels(true)}>
          Rescan
        </button>
      </form>
      <ImportModel />
      <Downloads />
      <table className="models-table">
        <thead>
          <tr>
            <th>Name</th>
            <th>Kind</th>
            <th>Family</th>
            <th>Format</th>
            <th>Size</th>
            <th>Hash</th>
            <th>Source</th>
          </tr>
        </thead>
        <tbody>
          {models.map((m) => (
            <tr key={m.id} title={m.path}>
              <td>{m.name}</td>
              <td>{m.kind}</td>
              <td>{m.family}</td>
              <td>{m.format}</td>
              <td>{formatBytes(m.sizeBytes)}</td>
              <td>{m.hash ? <code className="hash">{m.hash}</code> : <span className="muted">on first use</span>}</td>
              <td>{sourceLabel(m.source)}</td>
            </tr>
          ))}
          {models.length === 0 && (
            <tr>
              <td colSpan={7} className="muted">
                No models found.
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </section>
  );
}

function sourceLabel(source: string): string {
  if (source === 'embedded') return 'built in';
  if (source === 'library') return 'library';
  if (source === 'linked') return 'linked in place';
  if (source.startsWith('folder:')) return `folder ${source.slice(7)}`;
  return source;
}

/** A file or folder by path (the browser cannot see paths) or, in the desktop app, dropped here. */
function ImportModel() {
  const [p, setP] = useState('');
  const [busy, setBusy] = useState<string | null>(null);
  const [over, setOver] = useState(false);
  const picker = useRef<HTMLInputElement>(null);
  const run = async (path: string, mode: 'copy' | 'link') => {
    setBusy(mode === 'copy' ? `Copying ${path}…` : null);
    try {
      const m = await client.call('models.import', { path, mode });
      useStore.getState().toast('info', `${m.name} (${m.kind}, ${m.family}) ${mode === 'copy' ? 'copied into' : 'linked in'} the library.`);
      setP('');
      await useStore.getState().loadModels();
    } catch (err) {
      useStore.getState().toast('error', (err as Error).message);
    } finally {
      setBusy(null);
    }
  };
  return (
    <div
      className={`import-model${over ? ' over' : ''}`}
      onDragOver={(e) => {
        if (!client.pathForFile) return;
        e.preventDefault();
        setOver(true);
      }}
      onDragLeave={() => setOver(false)}
      onDrop={(e) => {
        setOver(false);
        if (!client.pathForFile) return;
        e.preventDefault();
        for (const f of Array.from(e.dataTransfer.files)) {
          const path = client.pathForFile(f);
          if (path) void run(path, 'link');
        }
      }}
    >
      <form
        className="seed-row"
        onSubmit={(e) => {
          e.preventDefault();
        }}
      >
        <input name="importPath" aria-label="Model file or folder to import" placeholder="/path/to/model.safetensors or a diffusers folder" value={p} onChange={(e) => setP(e.target.value)} />
        {client.pathForFile && (
          // The desktop app's file input opens the system's file dialog; the path fills the field, then Link or Copy.
          <>
            <button type="button" onClick={() => picker.current?.click()} title="Choose a .safetensors file">
              Choose…
            </button>
            <input
              ref={picker}
              type="file"
              accept=".safetensors,.sft"
              hidden
              onChange={(e) => {
                const f = e.target.files?.[0];
                const path = f && client.pathForFile ? client.pathForFile(f) : null;
                if (path) setP(path);
                e.target.value = '';
              }}
            />
          </>
        )}
        <button type="button" disabled={!p.trim() || !!busy} onClick={() => void run(p.trim(), 'link')} title="Use it where it is: nothing is copied">
          Link
        </button>
        <button type="button" disabled={!p.trim() || !!busy} onClick={() => void run(p.trim(), 'copy')} title="Copy it into the library folder">
          Copy
        </button>
      </form>
      <p className="muted small">{busy ?? (client.pathForFile ? 'Or drop .safetensors files or model folders here (linked in place).' : 'Files are checked from their contents: pickles (.ckpt) and unknown files are refused with the reason.')}</p>
    </div>
  );
}

function Downloads() {
  const downloads = useStore((s) => s.downloads);
  const [url, setUrl] = useState('');
  const [sha, setSha] = useState('');
  const act = useStore.getState().downloadAction;
  return (
    <div className="downloads">
      <form
        className="seed-row"
        onSubmit={async (e) => {
          e.preventDefault();
          try {
            await client.call('downloads.start', { url: url.trim(), ...(sha.trim() ? { sha256: sha.trim() } : {}) });
            setUrl('');
            setSha('');
          } catch (err) {
            useStore.getState().toast('error', (err as Error).message);
          }
        }}
      >
        <input name="downloadUrl" aria-label="Model URL" placeholder="https://huggingface.co/…/model.safetensors" value={url} onChange={(e) => setUrl(e.target.value)} />
        <input name="downloadSha" aria-label="SHA-256 (optional)" className="sha" placeholder="sha256 (optional)" value={sha} onChange={(e) => setSha(e.target.value)} />
        <button type="submit" disabled={!url.trim()}>
          Download
        </button>
      </form>
      {downloads.length > 0 && (
        <ul className="download-list" aria-label="Downloads">
          {downloads.map((d) => {
            const fraction = d.total ? d.received / d.total : 0;
            return (
              <li key={d.id} className={`download ${d.state}`} data-testid="download-row">
                <div className="download-head">
                  <strong title={d.url}>{d.filename}</strong>
                  <span className="muted small">
                    {d.state}
                    {d.total ? ` · ${formatBytes(d.received)} of ${formatBytes(d.total)}` : d.received ? ` · ${formatBytes(d.received)}` : ''}
                    {d.state === 'downloading' && d.bytesPerSec > 0 ? ` · ${formatBytes(d.bytesPerSec)}/s` : ''}
                    {d.state === 'downloading' && d.etaSeconds != null ? ` · ${formatEta(d.etaSeconds)} left` : ''}
                    {d.checksumSource ? ` · sha256 from ${d.checksumSource === 'user' ? 'you' : 'the source'}` : ''}
                  </span>
                  <span className="button-row">
                    {d.state === 'downloading' && (
                      <button type="button" onClick={() => void act(d.id, 'pause')}>
                        Pause
                      </button>
                    )}
                    {/* A failure that kept bytes (a drop, a full disk) can go on; a refused file cannot. */}
                    {(d.state === 'paused' || (d.state === 'failed' && d.received > 0)) && (
                      <button type="button" onClick={() => void act(d.id, 'resume')}>
                        Resume
                      </button>
                    )}
                    {(d.state === 'downloading' || d.state === 'paused' || d.state === 'queued' || (d.state === 'failed' && d.received > 0)) && (
                      <button type="button" className="danger" onClick={() => void act(d.id, 'cancel')}>
                        Cancel
                      </button>
                    )}
                    {(d.state === 'done' || d.state === 'cancelled' || (d.state === 'failed' && d.received === 0)) && (
                      <button type="button" className="icon small" aria-label={`Remove ${d.filename} from the list`} onClick={() => void act(d.id, 'remove')}>
                        ✕
                      </button>
                    )}
                  </span>
                </div>
                {d.state !== 'done' && d.state !== 'cancelled' && !(d.state === 'failed' && d.received === 0) && (
                  <div className="progress" role="progressbar" aria-label={`Download of ${d.filename}`} aria-valuemin={0} aria-valuemax={1} aria-valuenow={fraction}>
                    <div className="progress-fill" style={{ width: `${fraction * 100}%` }} />
                  </div>
                )}
                {d.error && <p className="field-error">{d.error.message}</p>}
              </li>
            );
          })}
        </ul>
      )}
    </div>
  );
}

/** Preview / standard / quality for the chosen model on this device; steps and sampler editable. */
function PresetsSection() {
  const settings = useStore((s) => s.settings);
  const { model: m, gpuName, presets } = useChosenModelPresets();
  if (!settings) return null;
  const edit = (name: PresetName, patch: { steps?: number; sampler?: Sampler }) =>
    void useStore.getState().updateSettings({ presetOverrides: { ...settings.presetOverrides, [name]: { ...settings.presetOverrides[name], ...patch } } });
  return (
    <section className="settings-section" aria-label="Presets">
      <h2>Generation presets</h2>
      <p className="muted">
        For {m ? m.name : 'the chosen model'} on {gpuName ?? 'this CPU'}: sizes stay at the model’s native {presets[0].width} px; memory mode {presets[0].memoryMode}. Edit the steps and sampler of each.
      </p>
      <table className="models-table presets-table">
        <thead>
          <tr>
            <th>Preset</th>
            <th>Steps</th>
            <th>Sampler</th>
            <th>Use</th>
          </tr>
        </thead>
        <tbody>
          {presets.map((p) => (
            <tr key={p.name}>
              <td>{PRESET_LABEL[p.name]}</td>
              <td>
                <input type="number" aria-label={`${PRESET_LABEL[p.name]} steps`} min={1} max={200} value={p.steps} onChange={(e) => Number(e.target.value) >= 1 && edit(p.name, { steps: Number(e.target.value) })} />
              </td>
              <td>
                <select aria-label={`${PRESET_LABEL[p.name]} sampler`} value={p.sampler} onChange={(e) => edit(p.name, { sampler: e.target.value as Sampler })}>
                  {SAMPLERS.map((x) => (
                    <option key={x}>{x}</option>
                  ))}
                </select>
              </td>
              <td className="muted small">{p.note}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {PRESET_NAMES.some((n) => settings.presetOverrides[n]) && (
        <button type="button" onClick={() => void useStore.getState().updateSettings({ presetOverrides: {} })}>
          Reset presets
        </button>
      )}
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

function CloudSettingsSection() {
  const status = useStore((s) => s.cloudStatus);
  const settings = useStore((s) => s.settings);
  const [key, setKey] = useState('');
  const [budget, setBudget] = useState(String(settings?.cloudBudgetUsd ?? 0));
  const [error, setError] = useState<string | null>(null);
  useEffect(() => setBudget(String(settings?.cloudBudgetUsd ?? 0)), [settings?.cloudBudgetUsd]);
  if (!status || !settings) return null;
  const saveKey = async () => {
    setError(null);
    try {
      useStore.setState({ cloudStatus: await client.call('cloud.setKey', { key }) });
      setKey('');
      useStore.getState().toast('info', 'OpenAI key stored in the OS keychain.');
    } catch (err) {
      setError((err as Error).message);
    }
  };
  return (
    <section className="settings-section" aria-label="Cloud">
      <h2>Cloud (OpenAI Images)</h2>
      <p className="muted">Optional: GPT Image and DALL·E beside the local runtime, in the same history. Prompts and canvas images are sent to OpenAI; nothing else leaves this machine.</p>
      <p data-testid="cloud-key-status">
        {status.hasKey
          ? `API key ${status.keyHint} · from ${status.keySource === 'keychain' ? 'the OS keychain' : 'OPENAI_API_KEY'}`
          : 'No API key.'}
      </p>
      {status.canStoreKey ? (
        <form
          className="seed-row"
          onSubmit={(e) => {
            e.preventDefault();
            void saveKey();
          }}
        >
          <input type="password" name="openaiKey" aria-label="OpenAI API key" autoComplete="off" placeholder="sk-…" value={key} onChange={(e) => setKey(e.target.value)} />
          <button type="submit" disabled={!key.trim()}>
            Save key
          </button>
          {status.keySource === 'keychain' && (
            <button type="button" onClick={async () => useStore.setState({ cloudStatus: await client.call('cloud.clearKey') })}>
              Remove
            </button>
          )}
        </form>
      ) : (
        <p className="muted small">In the web mode the key comes from the OPENAI_API_KEY environment variable of the process that serves Atelier; it is never sent to the page.</p>
      )}
      {error && (
        <p className="field-error" role="alert">
          {error}
        </p>
      )}
      <div className="row">
        <label className="field">
          <span className="field-label">
            Monthly budget (USD) <span className="hint">0 = none</span>
          </span>
          <input
            type="number"
            name="cloudBudget"
            min={0}
            step={1}
            value={budget}
            onChange={(e) => setBudget(e.target.value)}
            onBlur={() => {
              const v = Number(budget);
              if (Number.isFinite(v) && v >= 0 && v !== settings.cloudBudgetUsd) void useStore.getState().updateSettings({ cloudBudgetUsd: v });
            }}
          />
        </label>
        <p className="field cloud-spend" data-testid="cloud-spend">
          <span className="field-label">Spent this month</span>
          <span>
            {formatUsd(status.spentThisMonthUsd)}
            {status.budgetUsd > 0 ? ` of ${formatUsd(status.budgetUsd)}` : ''}
          </span>
        </p>
      </div>
    </section>
  );
}

function PromptSettingsSection() {
  const settings = useStore((s) => s.settings);
  const [suffix, setSuffix] = useState(settings?.styleSuffix ?? '');
  const [blocked, setBlocked] = useState((settings?.blockedTerms ?? []).join('\n'));
  useEffect(() => setSuffix(settings?.styleSuffix ?? ''), [settings?.styleSuffix]);
  useEffect(() => setBlocked((settings?.blockedTerms ?? []).join('\n')), [settings?.blockedTerms]);
  if (!settings) return null;
  return (
    <section className="settings-section" aria-label="Prompts">
      <h2>Prompts</h2>
      <label className="field">
        <span className="field-label">
          Style suffix <span className="hint">appended to every prompt, both backends; empty = off</span>
        </span>
        <input
          name="styleSuffix"
          placeholder="e.g. muted palette, matte painting"
          value={suffix}
          onChange={(e) => setSuffix(e.target.value)}
          onBlur={() => suffix !== settings.styleSuffix && void useStore.getState().updateSettings({ styleSuffix: suffix.trim() })}
        />
      </label>
      <label className="field">
        <span className="field-label">
          Blocked terms <span className="hint">one per line or comma-separated; prompts containing them are refused (shared machines)</span>
        </span>
        <textarea
          name="blockedTerms"
          rows={3}
          value={blocked}
          onChange={(e) => setBlocked(e.target.value)}
          onBlur={() => void useStore.getState().updateSettings({ blockedTerms: parseBlockedTerms(blocked) })}
        />
      </label>
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
      <PresetsSection />
      <PromptSettingsSection />
      <CloudSettingsSection />
      <p>
        <button type="button" className="link" onClick={() => useStore.getState().openFirstRun()}>
          Open the welcome guide
        </button>
      </p>
      {info && (
        <p className="muted about">
          Atelier {info.version} · {info.shell === 'web' ? 'web mode' : 'desktop'} · library at <code>{info.dataDir}</code>
        </p>
      )}
    </div>
  );
}
