/**
 * The welcome guide: from nothing to a first image. It shows the runtime being set up (and a
 * repair button when that failed), says what this machine allows, then offers three ways to get a
 * model: the built-in demo model at once, an existing models folder, or a recommended download.
 * It can be left at any point ("Later") and opened again from Settings; it never stands between
 * the user and the demo model.
 */
import { useState } from 'react';
import { deviceAdvice } from '../../../shared/presets';
import { useStore } from '../../app/store';
import { client } from '../../lib/client';
import { formatBytes, formatEta } from '../models/format';

/** What to download, by what the machine can run (SD 1.5 everywhere; SDXL where the card allows). */
export const RECOMMENDED = {
  sd15: {
    label: 'Stable Diffusion 1.5 (pruned, fp16 safetensors, 2.1 GB)',
    url: 'https://huggingface.co/stable-diffusion-v1-5/stable-diffusion-v1-5/blob/main/v1-5-pruned-emaonly-fp16.safetensors',
  },
  sdxl: {
    label: 'Stable Diffusion XL base 1.0 (6.9 GB)',
    url: 'https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/blob/main/sd_xl_base_1.0.safetensors',
  },
} as const;

export function FirstRun() {
  const open = useStore((s) => s.firstRunOpen);
  const runtime = useStore((s) => s.runtime);
  const settings = useStore((s) => s.settings);
  const models = useStore((s) => s.models);
  const downloads = useStore((s) => s.downloads);
  const [folder, setFolder] = useState('');
  const [url, setUrl] = useState('');
  const [busy, setBusy] = useState(false);
  if (!open || !runtime || !settings) return null;
  const s = useStore.getState;
  const advice = deviceAdvice(runtime.devices);
  const ready = runtime.state === 'ready';
  const failed = runtime.state === 'failed' || runtime.state === 'not_installed';
  const demo = models.find((m) => m.kind === 'checkpoint' && m.source === 'embedded');
  const own = models.filter((m) => m.kind === 'checkpoint' && m.source !== 'embedded');
  const suggested = advice.sdxl === 'good' ? RECOMMENDED.sdxl : RECOMMENDED.sd15;
  const active = downloads.filter((d) => d.state !== 'done' && d.state !== 'cancelled');

  const finish = (done: boolean) => s().closeFirstRun(done);
  const useDemo = async () => {
    if (!demo) return;
    s().setBackend('local');
    s().chooseModel(demo.id);
    if (!s().form.prompt.trim()) s().setField('prompt', 'a red circle on a blue background');
    finish(true);
    useStore.setState({ route: 'generate' });
    await s().submit();
  };

  return (
    <div className="dialog-backdrop">
      <section className="dialog first-run" role="dialog" aria-modal="true" aria-labelledby="first-run-title">
        <h2 id="first-run-title">Welcome to Atelier</h2>
        <p className="muted">Three steps to a first image. Everything here can be changed later in Settings.</p>

        <ol className="first-run-steps">
          <li className={`step ${ready ? 'ok' : failed ? 'bad' : 'busy'}`} aria-label="Runtime">
            <h3>1 · The local runtime</h3>
            <p data-testid="first-run-runtime">{runtime.message}</p>
            {runtime.provision && (
              <div className="progress" role="progressbar" aria-label="Runtime installation" aria-valuemin={0} aria-valuemax={1} aria-valuenow={runtime.provision.fraction}>
                <div className="progress-fill" style={{ width: `${runtime.provision.fraction * 100}%` }} />
              </div>
            )}
            {failed && (
              <div className="button-row">
                <button type="button" onClick={() => s().provisionRuntime(false)}>
                  {runtime.state === 'not_installed' ? 'Install' : 'Try again'}
                </button>
                <button type="button" onClick={() => s().provisionRuntime(true)} title="Delete the runtime's environment and build it again">
                  Repair
                </button>
              </div>
            )}
          </li>

          <li className={`step ${ready ? 'ok' : ''}`} aria-label="This machine">
            <h3>2 · This machine</h3>
            {ready ? (
              <>
                <p>
                  <strong data-testid="first-run-device">{advice.summary}</strong>
                </p>
                <ul className="advice">
                  {advice.lines.map((l) => (
                    <li key={l}>{l}</li>
                  ))}
                </ul>
              </>
            ) : (
              <p className="muted">Known once the runtime is ready.</p>
            )}
          </li>

          <li className={`step ${own.length ? 'ok' : ''}`} aria-label="A model">
            <h3>3 · A model</h3>
            <div className="choice">
              <div>
                <strong>Start with the built-in demo model</strong>
                <p className="muted small">64 px flat shapes (“a red circle on a blue background”), no download, about a second per image on a CPU.</p>
              </div>
              <button type="button" className="primary" disabled={!demo || !ready} onClick={() => void useDemo()}>
                Make a first image
              </button>
            </div>
            <form
              className="choice"
              onSubmit={async (e) => {
                e.preventDefault();
                setBusy(true);
                if (await s().addModelDir(folder)) setFolder('');
                setBusy(false);
              }}
            >
              <div>
                <strong>Use a models folder you already have</strong>
                <p className="muted small">An A1111 or ComfyUI models folder works in place; nothing is copied.</p>
                <input name="firstRunFolder" aria-label="Models folder" placeholder="/path/to/stable-diffusion-webui/models" value={folder} onChange={(e) => setFolder(e.target.value)} />
              </div>
              <button type="submit" disabled={busy || !folder.trim()}>
                Add folder
              </button>
            </form>
            {own.length > 0 && (
              <p className="ok-note" data-testid="first-run-found">
                {own.length} checkpoint{own.length === 1 ? '' : 's'} in the library: {own.slice(0, 3).map((m) => m.name).join(', ')}
                {own.length > 3 ? '…' : ''}
              </p>
            )}
            <form
              className="choice"
              onSubmit={async (e) => {
                e.preventDefault();
                try {
                  await client.call('downloads.start', { url: url.trim() || suggested.url });
                  setUrl('');
                } catch (err) {
                  s().toast('error', (err as Error).message);
                }
              }}
            >
              <div>
                <strong>Download a recommended model</strong>
                <p className="muted small">
                  {suggested.label}. Resumable, checked against the source’s checksum, and placed in the library only when whole. Or paste another file URL.
                </p>
                <input name="firstRunUrl" aria-label="Model URL" placeholder={suggested.url} value={url} onChange={(e) => setUrl(e.target.value)} />
              </div>
              <button type="submit">Download</button>
            </form>
            {active.map((d) => (
              <p key={d.id} className="muted small" data-testid="first-run-download">
                {d.filename}: {d.state}
                {d.total ? ` · ${formatBytes(d.received)} of ${formatBytes(d.total)}` : ` · ${formatBytes(d.received)}`}
                {d.state === 'downloading' && d.etaSeconds != null ? ` · ${formatEta(d.etaSeconds)} left` : ''}
                {d.error ? ` · ${d.error.message}` : ''}
              </p>
            ))}
          </li>
        </ol>

        <div className="dialog-actions">
          <button type="button" onClick={() => finish(false)} title="Close; the guide opens again next time (or from Settings)">
            Later
          </button>
          <button type="button" onClick={() => finish(true)}>
            Done
          </button>
        </div>
      </section>
    </div>
  );
}
