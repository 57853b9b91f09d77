/**
 * LoRA training presets by model family and device memory, in one place (the
 * UI suggests them, the main process validates with them). Numbers follow what
 * the kohya and diffusers communities run on consumer cards: SD 1.5 at 512 px
 * trains comfortably in 8 GB with gradient checkpointing; SDXL at 1024 px needs
 * 8-bit Adam and checkpointing to fit 12 GB, and 8 GB only at 768 px.
 */
import type { TrainingConfig } from './contract';

export type PresetTier = 'cpu' | '8gb' | '12gb' | '24gb';

export interface PresetRow {
  tier: PresetTier;
  label: string;
  config: Partial<TrainingConfig>;
  note: string;
}

const SD15: Record<PresetTier, PresetRow> = {
  cpu: {
    tier: 'cpu',
    label: 'CPU',
    config: { rank: 8, alpha: 8, batch: 1, gradientCheckpointing: false, mixedPrecision: 'no', optimizer: 'adamw', lr: 1e-4, steps: 300 },
    note: 'No CUDA GPU: training runs on the CPU. Fine for the small demo model; a 512 px SD 1.5 model takes hours.',
  },
  '8gb': {
    tier: '8gb',
    label: '8 GB',
    config: { rank: 16, alpha: 16, batch: 1, resolution: 512, gradientCheckpointing: true, mixedPrecision: 'auto', optimizer: 'adamw', lr: 1e-4, steps: 1500 },
    note: 'SD 1.5 at 512 px, batch 1, gradient checkpointing, fp16.',
  },
  '12gb': {
    tier: '12gb',
    label: '12 GB',
    config: { rank: 16, alpha: 16, batch: 2, resolution: 512, gradientCheckpointing: false, mixedPrecision: 'auto', optimizer: 'adamw', lr: 1e-4, steps: 1500 },
    note: 'SD 1.5 at 512 px, batch 2, fp16.',
  },
  '24gb': {
    tier: '24gb',
    label: '24 GB',
    config: { rank: 32, alpha: 32, batch: 4, resolution: 512, gradientCheckpointing: false, mixedPrecision: 'auto', optimizer: 'adamw', lr: 1e-4, steps: 1200, textEncoder: true },
    note: 'SD 1.5 at 512 px, batch 4, text encoder trained too.',
  },
};

const SDXL: Record<PresetTier, PresetRow> = {
  cpu: {
    tier: 'cpu',
    label: 'CPU',
    config: { rank: 8, alpha: 8, batch: 1, resolution: 512, gradientCheckpointing: true, mixedPrecision: 'no', optimizer: 'adamw', lr: 1e-4, steps: 300 },
    note: 'No CUDA GPU: SDXL training on a CPU takes days. Use an SD 1.5 model, or a machine with a GPU.',
  },
  '8gb': {
    tier: '8gb',
    label: '8 GB',
    config: { rank: 8, alpha: 8, batch: 1, resolution: 768, gradientCheckpointing: true, mixedPrecision: 'auto', optimizer: 'adamw8bit', lr: 1e-4, steps: 1500 },
    note: 'SDXL fits 8 GB only at 768 px with 8-bit Adam and gradient checkpointing.',
  },
  '12gb': {
    tier: '12gb',
    label: '12 GB',
    config: { rank: 16, alpha: 16, batch: 1, resolution: 1024, gradientCheckpointing: true, mixedPrecision: 'auto', optimizer: 'adamw8bit', lr: 1e-4, steps: 1500 },
    note: 'SDXL at 1024 px, batch 1, 8-bit Adam, gradient checkpointing.',
  },
  '24gb': {
    tier: '24gb',
    label: '24 GB',
    config: { rank: 32, alpha: 32, batch: 2, resolution: 1024, gradientCheckpointing: true, mixedPrecision: 'auto', optimizer: 'adamw', lr: 1e-4, steps: 1500 },
    note: 'SDXL at 1024 px, batch 2, gradient checkpointing.',
  },
};

/** The tier a device falls in: CUDA VRAM (with 512 MB slack, as cards report a little less than sold). */
export function presetTier(device: { kind: string; vramMb: number } | null | undefined): PresetTier {
  if (!device || device.kind !== 'cuda' || !device.vramMb) return 'cpu';
  const gb = (device.vramMb + 512) / 1024;
  if (gb >= 24) return '24gb';
  if (gb >= 12) return '12gb';
  if (gb >= 8) return '8gb';
  return '8gb';
}

/**
 * The preset for a model on a device. `nativeSize` overrides the resolution
 * where the model was trained smaller (the 64 px demo model).
 */
export function trainingPreset(family: string, device: { kind: string; vramMb: number } | null | undefined, nativeSize: number | null): PresetRow {
  const tier = presetTier(device);
  const row = (family === 'sdxl' ? SDXL : SD15)[tier];
  const config: Partial<TrainingConfig> = { ...row.config };
  if (nativeSize && nativeSize < 256) {
    // A small model (the built-in demo): train at its size; a few hundred quick steps learn a concept.
    Object.assign(config, { resolution: nativeSize, batch: 4, lr: 1e-3, steps: 300, sampleEvery: 50, checkpointEvery: 50 });
  } else if (config.resolution === undefined) {
    config.resolution = nativeSize ?? (family === 'sdxl' ? 1024 : 512);
  }
  return { ...row, config };
}

export const PRESET_TABLE = { sd15: SD15, sdxl: SDXL };
