import type { AppInfo, ModelRecord, RuntimeStatus, Settings, SettingsPatch } from '../../../shared/contract';
import type { SliceCreator } from '../../app/store';
import { client } from '../../lib/client';
import { modelDefaults } from '../../../shared/presets';

export interface SettingsSlice {
  settings: Settings | null;
  runtime: RuntimeStatus | null;
  models: ModelRecord[];
  appInfo: AppInfo | null;
  loadSettings(): Promise<void>;
  updateSettings(patch: SettingsPatch): Promise<boolean>;
  /** Watch one more models folder (used in place); true when it is in the list afterwards. */
  addModelDir(dir: string): Promise<boolean>;
  removeModelDir(dir: string): Promise<boolean>;
  setRuntime(status: RuntimeStatus): void;
  loadModels(rescan?: boolean): Promise<void>;
  provisionRuntime(repair: boolean): Promise<void>;
  restartRuntime(): Promise<void>;
  remember(modelId: string): void;
}

export const createSettingsSlice: SliceCreator<SettingsSlice> = (set, get) => ({
  settings: null,
  runtime: null,
  models: [],
  appInfo: null,
  loadSettings: async () => {
    const [settings, runtime, appInfo] = await Promise.all([client.call('settings.get'), client.call('runtime.status'), client.call('app.info')]);
    set((s) => ({
      settings,
      runtime,
      appInfo,
      form: {
        ...s.form,
        sampler: settings.defaults.sampler,
        steps: settings.defaults.steps,
        cfg: settings.defaults.cfg,
        width: settings.defaults.width,
        height: settings.defaults.height,
        modelId: s.form.modelId || settings.lastModelId,
      },
    }));
  },
  updateSettings: async (patch) => {
    try {
      const settings = await client.call('settings.update', patch);
      set({ settings });
      if (patch.modelDirs) await get().loadModels();
      return true;
    } catch (err) {
      get().toast('error', (err as Error).message);
      return false;
    }
  },
  addModelDir: async (dir) => {
    const d = dir.trim();
    const dirs = get().settings?.modelDirs ?? [];
    if (!d) return false;
    if (dirs.includes(d)) return true;
    return get().updateSettings({ modelDirs: [...dirs, d] });
  },
  removeModelDir: async (dir) => get().updateSettings({ modelDirs: (get().settings?.modelDirs ?? []).filter((x) => x !== dir) }),
  setRuntime: (runtime) => set({ runtime }),
  loadModels: async (rescan = false) => {
    const models = await client.call(rescan ? 'models.rescan' : 'models.list');
    set((s) => {
      const checkpoints = models.filter((m) => m.kind === 'checkpoint');
      const keep = checkpoints.some((m) => m.id === s.form.modelId);
      if (keep) return { models };
      // No model chosen yet: the user's own first, the built-in demo model when there is no other.
      const first = checkpoints.find((m) => m.source !== 'embedded') ?? checkpoints[0];
      return { models, form: { ...s.form, modelId: first?.id ?? '', ...modelDefaults(first) } };
    });
  },
  provisionRuntime: async (repair) => {
    try {
      set({ runtime: await client.call('runtime.provision', { repair }) });
    } catch (err) {
      get().toast('error', (err as Error).message);
    }
  },
  restartRuntime: async () => {
    set({ runtime: await client.call('runtime.restart') });
  },
  remember: (modelId) => {
    if (get().settings?.lastModelId !== modelId) void client.call('settings.update', { lastModelId: modelId }).then((settings) => set({ settings }));
  },
});
