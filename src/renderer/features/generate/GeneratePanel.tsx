import { useEffect, useMemo, useRef, useState } from 'react';
import { CLOUD_MODELS, cloudModel, formatUsd } from '../../../shared/cloud';
import { MAX_SEED, SAMPLERS, type CloudEstimate, type ModelRecord, type Sampler } from '../../../shared/contract';
import { useStore } from '../../app/store';
import { client } from '../../lib/client';
import { loadImage } from '../canvas/CanvasPage';
import { BATCH_MODES, planBatch, planSummary, type BatchMode } from './batch';
import { SizePresetSelect } from './SizePresetSelect';
import { LORA_WEIGHT_MAX, LORA_WEIGHT_MIN } from './slice';
import { PromptTools } from './PromptTools';
import { PRESET_LABEL, type PresetName } from '../../../shared/presets';
import { useChosenModelPresets } from './usePresets';
import { readDroppedImage } from '../../app/recall';

function Field({ label, error, children, hint }: { label: string; error?: string; hint?: string; children: React.ReactNode }) {
  return (
    <label className={`field${error ? ' has-error' : ''}`}>
      <span className="field-label">
        {label}
        {hint && <span className="hint">{hint}</span>}
      </span>
      {children}
      {error && <span className="field-error" role="alert">{error}</span>}
    </label>
  );
}

function NumberInput({ value, onChange, min, max, step = 1, name }: { value: number; onChange: (v: number) => void; min: number; max: number; step?: number; name: string }) {
  return (
    <input
      type="number"
      name={name}
      aria-label={name}
      value={Number.isFinite(value) ? value : ''}
      min={min}
      max={max}
      step={step}
      onChange={(e) => onChange(e.target.value === '' ? NaN : Number(e.target.value))}
    />
  );
}

function LockIcon({ locked }: { locked: boolean }) {
  return (
    <svg width="14" height="14" viewBox="0 0 16 16" aria-hidden fill="none" stroke="currentColor" strokeWidth="1.6">
      <rect x="3" y="7" width="10" height="7" rx="1.5" />
      <path d={locked ? 'M5.5 7V5a2.5 2.5 0 0 1 5 0v2' : 'M5.5 7V5a2.5 2.5 0 0 1 5 0'} />
    </svg>
  );
}

export function familyName(f: string): string {
  return f === 'sdxl' ? 'SDXL' : f === 'sd15' ? 'SD 1.5' : 'an unknown family';
}

/** Why a LoRA cannot go with a checkpoint, or null when it can. */
export function loraMismatch(lora: ModelRecord, checkpoint: ModelRecord | undefined): string | null {
  if (!checkpoint || lora.family === 'unknown' || checkpoint.family === 'unknown' || lora.family === checkpoint.family) return null;
  return `for ${familyName(lora.family)}; ${checkpoint.name} is ${familyName(checkpoint.family)}`;
}

/** The LoRAs of the generation: an "Add LoRA" select, then one row per LoRA with its weight. */
function LorasSection() {
  const loras = useStore((s) => s.form.loras);
  const modelId = useStore((s) => s.form.modelId);
  const models = useStore((s) => s.models);
  const error = useStore((s) => s.fieldErrors.loras);
  const available = useMemo(() => models.filter((m) => m.kind === 'lora').sort((a, b) => a.name.localeCompare(b.name)), [models]);
  const checkpoint = models.find((m) => m.id === modelId);
  const s = useStore.getState;
  return (
    <section className="loras" aria-label="LoRAs">
      <div className="loras-head">
        <span className="field-label">LoRAs</span>
        {loras.length > 0 && <span className="hint">{loras.length} active</span>}
      </div>
      {available.length === 0 ? (
        <p className="muted small loras-empty">No LoRAs yet: train one on the Train page (Ctrl+5), or add .safetensors LoRAs to a model folder.</p>
      ) : (
        <select
          name="addLora"
          aria-label="Add LoRA"
          value=""
          onChange={(e) => {
            if (e.target.value) s().addLora(e.target.value);
          }}
        >
          <option value="">Add LoRA…</option>
          {available.map((m) => {
            const added = loras.some((l) => l.modelId === m.id);
            const why = loraMismatch(m, checkpoint);
            return (
              <option key={m.id} value={m.id} disabled={added || !!why}>
                {m.name}
                {added ? ' · added' : why ? ` · ${why}` : m.family !== 'unknown' ? ` · ${familyName(m.family)}` : ''}
              </option>
            );
          })}
        </select>
      )}
      {loras.length > 0 && (
        <ul className="lora-list">
          {loras.map((l) => {
            const m = models.find((x) => x.id === l.modelId);
            const name = m?.name ?? 'Missing LoRA';
            const why = m ? loraMismatch(m, checkpoint) : 'no longer in the library';
            return (
              <li key={l.modelId} className={`lora-row${why ? ' has-error' : ''}`} data-testid="lora-row" aria-label={`LoRA ${name}`}>
                <div className="lora-row-head">
                  <span className="lora-name" title={m?.path}>
                    {name}
                  </span>
                  <button type="button" className="icon small" aria-label={`Remove ${name}`} title="Remove" onClick={() => s().removeLora(l.modelId)}>
                    ✕
                  </button>
                </div>
                <div className="lora-weight">
                  <input
                    type="range"
                    aria-label={`Weight of ${name}`}
                    min={LORA_WEIGHT_MIN}
                    max={LORA_WEIGHT_MAX}
                    step={0.05}
                    value={Number.isFinite(l.weight) ? Math.min(LORA_WEIGHT_MAX, Math.max(LORA_WEIGHT_MIN, l.weight)) : 1}
                    onChange={(e) => s().setLoraWeight(l.modelId, Number(e.target.value))}
                    onDoubleClick={() => s().setLoraWeight(l.modelId, 1)}
                  />
                  <input
                    type="number"
                    className="lora-weight-num"
                    name="loraWeight"
                    aria-label={`Weight of ${name}, number`}
                    min={LORA_WEIGHT_MIN}
                    max={LORA_WEIGHT_MAX}
                    step={0.05}
                    value={Number.isFinite(l.weight) ? l.weight : ''}
                    onChange={(e) => s().setLoraWeight(l.modelId, e.target.value === '' ? NaN : Number(e.target.value))}
                  />
                </div>
                {why && <span className="field-error">{m ? `This LoRA is ${why}.` : 'This LoRA is no longer in the library: remove it.'}</span>}
              </li>
            );
          })}
        </ul>
      )}
      {error && (
        <span className="field-error" role="alert">
          {error}
        </span>
      )}
    </section>
  );
}

const QUALITY_LABEL: Record<string, string> = { low: 'Low', medium: 'Medium', high: 'High', auto: 'Auto', standard: 'Standard', hd: 'HD' };

/** The OpenAI model and the options it takes (and only those), the price of the request and the month's spend. */
function CloudSection() {
  const form = useStore((s) => s.form);
  const errors = useStore((s) => s.fieldErrors);
  const status = useStore((s) => s.cloudStatus);
  const warning = useStore((s) => s.budgetWarning);
  const route = useStore((s) => s.route);
  const m = cloudModel(form.cloudModel) ?? CLOUD_MODELS[0];
  const [est, setEst] = useState<CloudEstimate | null>(null);
  const s = useStore.getState;
  const n = Number.isFinite(form.batch) ? Math.max(1, Math.min(m.maxN, form.batch)) : 1;
  useEffect(() => {
    let live = true;
    client
      .call('cloud.estimate', { model: m.id, size: form.cloudSize, quality: form.cloudQuality, n })
      .then((e) => live && setEst(e))
      .catch(() => live && setEst(null));
    return () => {
      live = false;
    };
  }, [m.id, form.cloudSize, form.cloudQuality, n, status?.spentThisMonthUsd, status?.budgetUsd]);
  return (
    <section className="cloud-options" aria-label="Cloud options">
      {status && !status.hasKey && (
        <p className="notice" role="status" data-testid="cloud-no-key">
          No OpenAI API key.{' '}
          {status.canStoreKey ? (
            <button type="button" className="link" onClick={() => useStore.setState({ route: 'settings' })}>
              Add one in Settings
            </button>
          ) : (
            'Start Atelier with OPENAI_API_KEY set.'
          )}
        </p>
      )}
      <Field label="OpenAI model" error={errors.modelId}>
        <select name="cloudModel" value={m.id} onChange={(e) => s().chooseCloudModel(e.target.value)}>
          {CLOUD_MODELS.filter((x) => route !== 'canvas' || x.edit).map((x) => (
            <option key={x.id} value={x.id}>
              {x.label}
            </option>
          ))}
        </select>
      </Field>
      <div className="row">
        <Field label="Size" error={errors.cloud}>
          <select name="cloudSize" value={form.cloudSize} onChange={(e) => s().setField('cloudSize', e.target.value)}>
            {m.sizes.map((z) => (
              <option key={z} value={z}>
                {z === 'auto' ? 'Auto' : z.replace('x', '×')}
              </option>
            ))}
          </select>
        </Field>
        {m.qualities.length > 0 && (
          <Field label="Quality">
            <select name="cloudQuality" value={form.cloudQuality} onChange={(e) => s().setField('cloudQuality', e.target.value)}>
              {m.qualities.map((q) => (
                <option key={q} value={q}>
                  {QUALITY_LABEL[q] ?? q}
                </option>
              ))}
            </select>
          </Field>
        )}
        {m.styles.length > 0 && (
          <Field label="Style">
            <select name="cloudStyle" value={form.cloudStyle} onChange={(e) => s().setField('cloudStyle', e.target.value)}>
              {m.styles.map((x) => (
                <option key={x} value={x}>
                  {x[0].toUpperCase() + x.slice(1)}
                </option>
              ))}
            </select>
          </Field>
        )}
        <Field label="Images" error={errors.batch}>
          <NumberInput name="batch" value={form.batch} min={1} max={m.maxN} onChange={(v) => s().setField('batch', v)} />
        </Field>
      </div>
      {est && (
        <p className={`cloud-cost${est.overBudget ? ' over' : ''}`} data-testid="cloud-cost" aria-live="polite">
          ≈ {formatUsd(est.costUsd)} · this month {formatUsd(est.spentThisMonthUsd)}
          {est.budgetUsd > 0 ? ` of ${formatUsd(est.budgetUsd)}` : ''}
          {m.note ? <span className="hint"> ({m.note})</span> : null}
        </p>
      )}
      {warning && (
        <p className="budget-warning" role="alert" data-testid="budget-warning">
          {warning} Generate again to go on, or raise the budget in Settings.
        </p>
      )}
    </section>
  );
}

/** Preview / standard / quality for the chosen model on this device (Settings edits them). */
function PresetPicker() {
  const form = useStore((s) => s.form);
  const { presets } = useChosenModelPresets();
  const current = presets.find((p) => p.steps === form.steps && p.sampler === form.sampler && p.width === form.width && p.height === form.height);
  return (
    <div className="preset-picker" role="group" aria-label="Preset">
      <span className="field-label">Preset</span>
      {presets.map((p) => (
        <button
          key={p.name}
          type="button"
          aria-pressed={current?.name === p.name}
          className={current?.name === p.name ? 'active' : ''}
          title={`${p.steps} steps · ${p.sampler} · ${p.width}×${p.height} · ${p.note} (memory mode ${p.memoryMode})`}
          onClick={() => {
            const set = useStore.getState().setField;
            set('steps', p.steps);
            set('sampler', p.sampler);
            set('width', p.width);
            set('height', p.height);
          }}
        >
          {PRESET_LABEL[p.name as PresetName]}
        </button>
      ))}
      {!current && <span className="hint">custom</span>}
    </div>
  );
}

function BackendSwitch() {
  const backend = useStore((s) => s.form.backend);
  return (
    <div className="mode-switch backend-switch" role="tablist" aria-label="Backend">
      {(['local', 'cloud'] as const).map((b) => (
        <button key={b} type="button" role="tab" aria-selected={backend === b} className={backend === b ? 'active' : ''} onClick={() => useStore.getState().setBackend(b)}>
          {b === 'local' ? 'Local' : 'Cloud · OpenAI'}
        </button>
      ))}
    </div>
  );
}

let handledPromptFocus = 0;
const NO_TERMS: readonly string[] = [];

export function GeneratePanel({ variant = 'form' }: { variant?: 'form' | 'canvas' }) {
  const canvas = variant === 'canvas';
  const form = useStore((s) => s.form);
  const errors = useStore((s) => s.fieldErrors);
  const seedLocked = useStore((s) => s.seedLocked);
  const models = useStore((s) => s.models);
  const setField = useStore((s) => s.setField);
  const submit = useStore((s) => s.submit);
  const batchMode = useStore((s) => s.batchMode);
  const promptFocus = useStore((s) => s.promptFocus);
  const blockedTerms = useStore((s) => s.settings?.blockedTerms ?? NO_TERMS);
  const budgetWarning = useStore((s) => s.budgetWarning);
  const local = form.backend === 'local';
  const checkpoints = useMemo(() => models.filter((m) => m.kind === 'checkpoint'), [models]);
  const plan = useMemo(() => (canvas || batchMode === 'single' ? null : planBatch(batchMode, form.prompt)), [canvas, batchMode, form.prompt]);
  const promptRef = useRef<HTMLTextAreaElement>(null);
  const recallInput = useRef<HTMLInputElement>(null);

  // "Same seed, new prompt": the prompt is focused and selected, ready to be typed over (once per request).
  useEffect(() => {
    if (!promptFocus || promptFocus === handledPromptFocus || !promptRef.current) return;
    handledPromptFocus = promptFocus;
    promptRef.current.focus();
    promptRef.current.select();
  }, [promptFocus]);

  return (
    <form
      className="generate-panel"
      aria-label="Generate"
      onSubmit={(e) => {
        e.preventDefault();
        if (canvas) void useStore.getState().submitCanvas(loadImage);
        else void submit();
      }}
    >
      <BackendSwitch />
      {!canvas && (
      <div className="mode-switch" role="tablist" aria-label="Mode">
        {(['txt2img', 'img2img'] as const).map((m) => (
          <button key={m} type="button" role="tab" aria-selected={form.mode === m} className={form.mode === m ? 'active' : ''} onClick={() => setField('mode', m)}>
            {m === 'txt2img' ? 'Text to image' : 'Image to image'}
          </button>
        ))}
      </div>
      )}

      <Field label={batchMode === 'lines' && !canvas ? 'Prompts, one per line' : 'Prompt'} error={errors.prompt} hint="Ctrl+Enter to generate">
        <textarea
          ref={promptRef}
          name="prompt"
          rows={batchMode === 'single' || canvas ? 5 : 7}
          autoFocus
          placeholder={
            canvas || batchMode === 'single'
              ? 'a lighthouse on a cliff at dusk, oil painting'
              : batchMode === 'lines'
                ? 'a lighthouse at dusk\na lighthouse at dawn\na lighthouse in fog'
                : 'a {red|blue} {circle|square}, flat colours'
          }
          value={form.prompt}
          onChange={(e) => setField('prompt', e.target.value)}
        />
      </Field>
      <PromptTools
        prompt={form.prompt}
        negativePrompt={form.negativePrompt}
        backend={form.backend}
        blockedTerms={blockedTerms}
        onPrompt={(v) => setField('prompt', v)}
        onNegative={(v) => setField('negativePrompt', v)}
      />
      {!canvas && (
        <div className="batch-mode">
          <select name="batchMode" aria-label="Batch mode" value={batchMode} onChange={(e) => useStore.getState().setBatchMode(e.target.value as BatchMode)}>
            {BATCH_MODES.map((m) => (
              <option key={m.mode} value={m.mode}>
                {m.label}
              </option>
            ))}
          </select>
          {plan && (
            <span className={`batch-summary${plan.error ? ' has-error' : ''}`} data-testid="batch-summary" aria-live="polite">
              {plan.error && !form.prompt.trim() ? (batchMode === 'lines' ? 'Each non-empty line is one job' : 'Every {a|b} group is combined with the others') : planSummary(plan, form.batch)}
            </span>
          )}
        </div>
      )}
      {local && (
        <Field label="Negative prompt" error={errors.negativePrompt}>
          <textarea name="negativePrompt" rows={2} placeholder="blurry, low quality" value={form.negativePrompt} onChange={(e) => setField('negativePrompt', e.target.value)} />
        </Field>
      )}

      {!canvas && form.mode === 'img2img' && (
        <div className="init-image">
          {form.initImagePath ? (
            <img src={client.fileUrl(form.initImagePath)} alt="Starting image" />
          ) : form.initImageId ? (
            <p className="muted">The starting image of the restored entry (from the history).</p>
          ) : (
            <p className="muted">Choose a starting image in the Gallery ("Use as starting image").</p>
          )}
          {errors.initImageId && <span className="field-error" role="alert">{errors.initImageId}</span>}
          <Field label={`Strength ${form.strength.toFixed(2)}`} hint="0 keeps the image, 1 ignores it">
            <input type="range" name="strength" min={0} max={1} step={0.01} value={form.strength} onChange={(e) => setField('strength', Number(e.target.value))} />
          </Field>
        </div>
      )}

      {!local && <CloudSection />}
      {local && (
      <>
      <Field label="Model" error={errors.modelId}>
        <select name="model" value={form.modelId} onChange={(e) => useStore.getState().chooseModel(e.target.value)}>
          {checkpoints.length === 0 && <option value="">No models: add a folder in Settings</option>}
          {checkpoints.map((m) => (
            <option key={m.id} value={m.id}>
              {m.name} · {m.family === 'sdxl' ? 'SDXL' : m.family === 'sd15' ? 'SD 1.5' : '?'}
              {checkpoints.some((o) => o !== m && o.name === m.name) ? ` · ${m.format === 'diffusers' ? 'folder' : 'file'}` : ''}
            </option>
          ))}
        </select>
      </Field>

      <LorasSection />

      <PresetPicker />
      <div className="row">
        <Field label="Sampler">
          <select name="sampler" value={form.sampler} onChange={(e) => setField('sampler', e.target.value as Sampler)}>
            {SAMPLERS.map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </Field>
        <Field label="Steps" error={errors.steps}>
          <NumberInput name="steps" value={form.steps} min={1} max={200} onChange={(v) => setField('steps', v)} />
        </Field>
        <Field label="CFG" error={errors.cfg}>
          <NumberInput name="cfg" value={form.cfg} min={0} max={30} step={0.5} onChange={(v) => setField('cfg', v)} />
        </Field>
      </div>

      <Field label="Seed" error={errors.seed}>
        <div className="seed-row">
          <NumberInput name="seed" value={form.seed} min={0} max={MAX_SEED} onChange={(v) => setField('seed', v)} />
          <button type="button" className="icon" title="New random seed" aria-label="Randomize seed" onClick={() => useStore.getState().randomizeSeed()}>
            ⚄
          </button>
          <button
            type="button"
            className={`icon${seedLocked ? ' active' : ''}`}
            aria-pressed={seedLocked}
            aria-label="Lock seed"
            title={seedLocked ? 'Seed locked: every generation reuses it' : 'Seed unlocked: a new one after every generation'}
            onClick={() => useStore.getState().setSeedLocked(!seedLocked)}
          >
            <LockIcon locked={seedLocked} />
          </button>
        </div>
      </Field>

      {!canvas && (
      <>
      <Field label="Size" error={errors.width ?? errors.height}>
        <SizePresetSelect
          name="sizePreset"
          label="Size preset"
          width={form.width}
          height={form.height}
          onChange={(w, h) => {
            setField('width', w);
            setField('height', h);
          }}
        />
      </Field>
      <div className="row">
        <Field label="Width">
          <NumberInput name="width" value={form.width} min={64} max={4096} step={8} onChange={(v) => setField('width', v)} />
        </Field>
        <button
          type="button"
          className="icon swap"
          aria-label="Swap width and height"
          title="Swap width and height"
          onClick={() => {
            const { width, height } = useStore.getState().form;
            setField('width', height);
            setField('height', width);
          }}
        >
          ⇄
        </button>
        <Field label="Height">
          <NumberInput name="height" value={form.height} min={64} max={4096} step={8} onChange={(v) => setField('height', v)} />
        </Field>
        <Field label="Batch" error={errors.batch}>
          <NumberInput name="batch" value={form.batch} min={1} max={16} onChange={(v) => setField('batch', v)} />
        </Field>
      </div>
      </>
      )}
      {canvas && (
        <Field label="Batch" error={errors.batch}>
          <NumberInput name="batch" value={form.batch} min={1} max={16} onChange={(v) => setField('batch', v)} />
        </Field>
      )}

      <label className="check reuse" title="An identical request (model, prompt, seed, every setting) is answered from the history at once, without generating.">
        <input type="checkbox" name="reuseResults" checked={!form.noCache} onChange={(e) => setField('noCache', !e.target.checked)} />
        Reuse identical results
        <span className="hint">{form.noCache ? 'always generate' : 'from the history'}</span>
      </label>
      </>
      )}

      {!canvas && (
        <button type="submit" className={`primary generate-button${budgetWarning ? ' over-budget' : ''}`} disabled={!!plan?.error && !!form.prompt.trim()}>
          {budgetWarning ? 'Generate anyway' : plan && !plan.error ? `Queue ${plan.count} ${plan.count === 1 ? 'job' : 'jobs'}` : 'Generate'}
        </button>
      )}
      {!canvas && (
        <div className="recall-open">
          <button type="button" className="link" onClick={() => recallInput.current?.click()}>
            Recall parameters from a PNG…
          </button>
          <span className="hint">or drop one anywhere</span>
          <input
            ref={recallInput}
            type="file"
            accept="image/png"
            hidden
            data-testid="recall-file-input"
            onChange={(e) => {
              const f = e.target.files?.[0];
              if (f) void readDroppedImage(f);
              e.target.value = '';
            }}
          />
        </div>
      )}
    </form>
  );
}
