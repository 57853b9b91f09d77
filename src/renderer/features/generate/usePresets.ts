import { useMemo } from 'react';
import { generationPresets, type GenerationPreset } from '../../../shared/presets';
import { useStore } from '../../app/store';

/** Preview / standard / quality for the model chosen in the form, on this machine's GPU (or CPU), with the user's edits. */
export function useChosenModelPresets(): { model: ReturnType<typeof useStore.getState>['models'][number] | undefined; gpuName: string | null; presets: GenerationPreset[] } {
  const overrides = useStore((s) => s.settings?.presetOverrides);
  const devices = useStore((s) => s.runtime?.devices);
  const models = useStore((s) => s.models);
  const modelId = useStore((s) => s.form.modelId);
  const model = models.find((x) => x.id === modelId);
  const gpu = devices?.find((d) => d.kind === 'cuda') ?? null;
  const presets = useMemo(
    () => generationPresets(gpu, model?.family ?? 'sd15', model?.nativeSize ?? null, overrides ?? {}),
    [gpu, model?.family, model?.nativeSize, overrides],
  );
  return { model, gpuName: gpu?.name ?? null, presets };
}
