import { useEffect, useMemo } from 'react';
import { MAX_SEED, TRAINING_OPTIMIZERS, type TrainingConfig } from '../../../shared/contract';
import { useStore } from '../../app/store';
import { familyName } from '../generate/GeneratePanel';

function Field({ label, error, hint, children, className }: { label: string; error?: string; hint?: string; children: React.ReactNode; className?: string }) {
  return (
    <label className={`field${error ? ' has-error' : ''}${className ? ` ${className}` : ''}`}>
      <span className="field-label">
        {label}
        {hint && <span className="hint">{hint}</span>}
      </span>
      {children}
      {error && (
        <span className="field-error" role="alert">
          {error}
        </span>
      )}
    </label>
  );
}

type NumKey = { [K in keyof TrainingConfig]: TrainingConfig[K] extends number ? K : never }[keyof TrainingConfig];
type BoolKey = { [K in keyof TrainingConfig]: TrainingConfig[K] extends boolean ? K : never }[keyof TrainingConfig];

function Num({ k, label, min, max, step = 1, hint }: { k: NumKey; label: string; min: number; max: number; step?: number | 'any'; hint?: string }) {
  const value = useStore((s) => s.trainForm.config[k]);
  const error = useStore((s) => s.trainErrors[k]);
  return (
    <Field label={label} error={error} hint={hint}>
      <input
        type="number"
        name={k}
        value={Number.isFinite(value) ? value : ''}
        min={min}
        max={max}
        step={step}
        onChange={(e) => useStore.getState().setTrainConfig(k, e.target.value === '' ? NaN : Number(e.target.value))}
      />
    </Field>
  );
}

function Check({ k, label, hint }: { k: BoolKey; label: string; hint?: string }) {
  const value = useStore((s) => s.trainForm.config[k]);
  return (
    <label className="check" title={hint}>
      <input type="checkbox" name={k} checked={value} onChange={(e) => useStore.getState().setTrainConfig(k, e.target.checked)} />
      <span>{label}</span>
      {hint && <span className="hint">{hint}</span>}
    </label>
  );
}

function Choice<K extends 'optimizer' | 'lrScheduler' | 'mixedPrecision'>({ k, label, options }: { k: K; label: string; options: { value: TrainingConfig[K]; label: string }[] }) {
  const value = useStore((s) => s.trainForm.config[k]);
  const error = useStore((s) => s.trainErrors[k]);
  return (
    <Field label={label} error={error}>
      <select name={k} value={value} onChange={(e) => useStore.getState().setTrainConfig(k, e.target.value as TrainingConfig[K])}>
        {options.map((o) => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </select>
    </Field>
  );
}

/** Beside the dataset: base model (its preset fills the rest), the LoRA's name and every training setting. */
export function TrainForm() {
  const dataset = useStore((s) => s.dataset);
  const models = useStore((s) => s.models);
  const form = useStore((s) => s.trainForm);
  const errors = useStore((s) => s.trainErrors);
  const preset = useStore((s) => s.trainPreset);
  const presetLoading = useStore((s) => s.trainPresetLoading);
  const busy = useStore((s) => s.trainBusy);
  const generateModelId = useStore((s) => s.form.modelId);
  const checkpoints = useMemo(() => models.filter((m) => m.kind === 'checkpoint'), [models]);

  // First visit: the model the Generate page uses (or the first checkpoint), with its preset.
  useEffect(() => {
    const s = useStore.getState();
    if (s.trainForm.modelId && checkpoints.some((m) => m.id === s.trainForm.modelId)) return;
    const pick = checkpoints.find((m) => m.id === generateModelId) ?? checkpoints[0];
    if (pick) void s.chooseBaseModel(pick.id);
  }, [checkpoints, generateModelId]);

  if (!dataset) return null;
  const s = useStore.getState;
  const noImages = dataset.images.length === 0;

  return (
    <form
      className="train-form"
      aria-label="Train a LoRA"
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        void s().startTraining();
      }}
    >
      <h2>Train a LoRA</h2>
      <Field label="Base model" error={errors.modelId}>
        <select name="baseModel" value={form.modelId} onChange={(e) => void s().chooseBaseModel(e.target.value)}>
          {checkpoints.length === 0 && <option value="">No checkpoints: add a model folder in Settings</option>}
          {checkpoints.map((m) => (
            <option key={m.id} value={m.id}>
              {m.name} · {familyName(m.family)}
              {m.source === 'embedded' ? ' · built-in demo' : ''}
            </option>
          ))}
        </select>
      </Field>
      <div className="preset-note" data-testid="preset-note" aria-live="polite">
        {presetLoading ? (
          <span className="muted">Finding settings for this model on this machine…</span>
        ) : preset ? (
          <>
            <strong>{preset.label}</strong> — {preset.note}
          </>
        ) : null}
      </div>
      <Field label="LoRA name" error={errors.name} hint="the file in your library">
        <input name="loraName" value={form.name} maxLength={120} onChange={(e) => s().setTrainField('name', e.target.value)} />
      </Field>

      <div className="row">
        <Num k="steps" label="Steps" min={1} max={1_000_000} />
        <Num k="lr" label="Learning rate" min={0} max={1} step="any" />
      </div>
      <div className="row">
        <Num k="rank" label="Rank" min={1} max={256} hint="dim" />
        <Num k="alpha" label="Alpha" min={0} max={1024} step="any" />
        <Num k="batch" label="Batch" min={1} max={64} />
      </div>
      <div className="row">
        <Num k="resolution" label="Resolution" min={64} max={2048} step={8} hint="px" />
        <Num k="seed" label="Seed" min={0} max={MAX_SEED} />
      </div>
      <div className="row">
        <Num k="sampleEvery" label="Sample every" min={0} max={100_000} hint="0: never" />
        <Num k="checkpointEvery" label="Checkpoint every" min={0} max={100_000} hint="steps" />
      </div>
      <Field label="Sample prompts" error={errors.samplePrompts} hint="one per line, at most 8">
        <textarea
          name="samplePrompts"
          rows={3}
          value={form.samplePrompts}
          placeholder={`Empty: the trigger word${dataset.trigger ? ` (${dataset.trigger})` : ''} and the first caption`}
          onChange={(e) => s().setTrainField('samplePrompts', e.target.value)}
        />
      </Field>

      <details className="advanced">
        <summary>Advanced</summary>
        <Choice k="optimizer" label="Optimizer" options={TRAINING_OPTIMIZERS.map((o) => ({ value: o, label: o === 'adamw8bit' ? 'AdamW 8-bit (less memory, CUDA)' : 'AdamW' }))} />
        <div className="row">
          <Choice
            k="lrScheduler"
            label="LR schedule"
            options={[
              { value: 'constant', label: 'Constant' },
              { value: 'cosine', label: 'Cosine' },
              { value: 'linear', label: 'Linear' },
            ]}
          />
          <Num k="warmupSteps" label="Warmup steps" min={0} max={100_000} />
        </div>
        <Choice
          k="mixedPrecision"
          label="Mixed precision"
          options={[
            { value: 'auto', label: 'Automatic (fp16/bf16 on a GPU)' },
            { value: 'no', label: 'Off (fp32)' },
            { value: 'fp16', label: 'fp16' },
            { value: 'bf16', label: 'bf16' },
          ]}
        />
        <Check k="textEncoder" label="Train the text encoder too" />
        <Check k="gradientCheckpointing" label="Gradient checkpointing" hint="less memory, slower" />
        <div className="row">
          <Num k="sampleSteps" label="Sample steps" min={1} max={100} />
          <Num k="sampleSeed" label="Sample seed" min={0} max={MAX_SEED} />
        </div>
      </details>

      {errors.form && (
        <p className="field-error form-error" role="alert">
          {errors.form}
        </p>
      )}
      {errors.datasetId && (
        <p className="field-error form-error" role="alert">
          Dataset {errors.datasetId}
        </p>
      )}
      <button type="submit" className="primary start-button" disabled={busy || noImages || !form.modelId} title={noImages ? 'Add images to the dataset first' : undefined}>
        {busy ? 'Starting…' : 'Start training'}
      </button>
      {noImages && <p className="muted small">Add images to the dataset to train on them.</p>}
    </form>
  );
}
