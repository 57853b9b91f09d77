/**
 * Generation presets (preview / standard / quality) chosen from the device and the model family,
 * and what a device allows, in words, for the first run. Pure functions: the renderer shows them,
 * the user's edits (settings.presetOverrides) are laid over them.
 */
import type { Sampler } from './contract';
import { presetTier, trainingPreset } from './training';

/**
 * The built-in demo model's guidance scale. It was picked on a validation run of its evaluation
 * (seed 1; the reported numbers use seed 0): at 3 it gets background and shape colours right most
 * often; SD's usual 7 makes it swap and blur colours. Used when the demo model is chosen.
 */
export const DEMO_MODEL_CFG = 3;

/** Settings a model asks for when it is chosen: its native size, and the demo model's guidance. */
export function modelDefaults(m: { source: string; nativeSize: number | null } | undefined): { width?: number; height?: number; cfg?: number } {
  if (!m) return {};
  return { ...(m.nativeSize ? { width: m.nativeSize, height: m.nativeSize } : {}), ...(m.source === 'embedded' ? { cfg: DEMO_MODEL_CFG } : {}) };
}

export type PresetName = 'preview' | 'standard' | 'quality';
export const PRESET_NAMES: readonly PresetName[] = ['preview', 'standard', 'quality'];
export const PRESET_LABEL: Record<PresetName, string> = { preview: 'Preview', standard: 'Standard', quality: 'Quality' };

export interface Device {
  kind: string;
  name: string;
  vramMb: number;
}

export interface GenerationPreset {
  name: PresetName;
  steps: number;
  sampler: Sampler;
  width: number;
  height: number;
  /** The memory mode this device needs for this family (what 'auto' picks). */
  memoryMode: 'normal' | 'low' | 'minimal';
  note: string;
}

export type PresetOverrides = Partial<Record<PresetName, { steps?: number; sampler?: Sampler }>>;

const gbOf = (d: Device | null | undefined) => (d && d.kind === 'cuda' ? (d.vramMb + 512) / 1024 : 0);

/** The memory mode a family needs on a device: what fits in VRAM without offloading, else slicing, else offload. */
export function memoryModeFor(device: Device | null | undefined, family: string): GenerationPreset['memoryMode'] {
  const gb = gbOf(device);
  if (!gb) return 'normal'; // the CPU has the machine's memory
  if (family === 'sdxl') return gb >= 10 ? 'normal' : gb >= 6 ? 'low' : 'minimal';
  return gb >= 6 ? 'normal' : gb >= 4 ? 'low' : 'minimal';
}

/**
 * Preview / standard / quality for a model on a device. Sizes stay at the model's native size
 * (larger doubles subjects; smaller loses them); the presets trade steps and sampler. On a CPU the
 * step counts are lower: a 512 px SD 1.5 step there takes seconds.
 */
export function generationPresets(device: Device | null | undefined, family: string, nativeSize: number | null, overrides: PresetOverrides = {}): GenerationPreset[] {
  const side = nativeSize ?? (family === 'sdxl' ? 1024 : 512);
  const cpu = !gbOf(device);
  const mode = memoryModeFor(device, family);
  const base: Record<PresetName, Omit<GenerationPreset, 'name' | 'width' | 'height' | 'memoryMode'>> = {
    preview: { steps: cpu ? 8 : 12, sampler: 'DPM++ 2M Karras', note: 'fast drafts to find a composition' },
    standard: { steps: cpu ? 20 : 25, sampler: 'DPM++ 2M Karras', note: 'the everyday setting' },
    quality: { steps: cpu ? 30 : 40, sampler: 'DPM++ SDE Karras', note: 'finals: slower, finer detail' },
  };
  return PRESET_NAMES.map((name) => ({ name, ...base[name], ...overrides[name], width: side, height: side, memoryMode: mode }));
}

export interface DeviceAdvice {
  /** "NVIDIA GeForce RTX 3060 · 12 GB" or "CPU" */
  summary: string;
  lines: string[];
  sd15: 'good' | 'slow' | 'no';
  sdxl: 'good' | 'slow' | 'no';
  trainingTier: string;
}

/** What this machine allows, said plainly (the first run shows it). */
export function deviceAdvice(devices: readonly Device[]): DeviceAdvice {
  const gpu = devices.find((d) => d.kind === 'cuda') ?? null;
  const gb = gbOf(gpu);
  const tier = presetTier(gpu);
  const train15 = trainingPreset('sd15', gpu, null);
  const trainXl = trainingPreset('sdxl', gpu, null);
  if (!gpu) {
    return {
      summary: 'CPU (no NVIDIA GPU found)',
      sd15: 'slow',
      sdxl: 'slow',
      trainingTier: tier,
      lines: [
        'The built-in demo model makes an image in about a second here.',
        'SD 1.5 works but slowly (a 512 px image at 20 steps takes minutes); SDXL is very slow.',
        'LoRA training: the demo model trains in minutes; SD 1.5 / SDXL training needs an NVIDIA GPU.',
        'Cloud mode (OpenAI) works on any machine, with an API key.',
      ],
    };
  }
  const sizeGb = `${gb.toFixed(gb >= 10 ? 0 : 1)} GB`;
  const sdxl: DeviceAdvice['sdxl'] = gb >= 8 ? 'good' : gb >= 6 ? 'slow' : 'no';
  return {
    summary: `${gpu.name} · ${sizeGb}`,
    sd15: gb >= 4 ? 'good' : 'slow',
    sdxl,
    trainingTier: tier,
    lines: [
      `SD 1.5: ${gb >= 4 ? 'yes, at full speed' : 'yes, in low-memory mode (slower)'} (memory mode ${memoryModeFor(gpu, 'sd15')}).`,
      `SDXL: ${sdxl === 'good' ? 'yes' : sdxl === 'slow' ? 'yes, with CPU offload (slow)' : 'not recommended on this card'} (memory mode ${memoryModeFor(gpu, 'sdxl')}).`,
      `LoRA training preset: ${train15.label} (${train15.note}) · SDXL: ${trainXl.note}`,
    ],
  };
}
