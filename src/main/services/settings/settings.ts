/**
 * Settings, validated with the contract's schema and filled with defaults.
 * The storage is injected: electron-store in the app, `conf` (the library
 * electron-store is built on, same file format) in web mode and the CLI, an
 * in-memory object in tests. A corrupt or hand-edited value is replaced by its
 * default, key by key, never by wiping the rest.
 */
import { Settings, SettingsPatch } from '../../../shared/contract';
import { AtelierError } from '../../../shared/errors';
import { describeZodError } from '../../host/dispatcher';

export interface SettingsBackend {
  read(): unknown;
  write(value: Settings): void;
}

/** Adapter for electron-store and conf, which both expose the whole object as `.store`. */
export function storeBackend(store: { store: Record<string, unknown> }): SettingsBackend {
  return {
    read: () => store.store,
    write: (value) => {
      store.store = value as unknown as Record<string, unknown>;
    },
  };
}

export function memoryBackend(initial: unknown = {}): SettingsBackend & { value: unknown } {
  const b = {
    value: initial,
    read: () => b.value,
    write: (v: Settings) => {
      b.value = structuredClone(v);
    },
  };
  return b;
}

/** Parse what is stored, keeping every valid key and resetting the invalid ones to their defaults. */
export function repairSettings(raw: unknown): { settings: Settings; repaired: string[] } {
  const whole = Settings.safeParse(raw ?? {});
  if (whole.success) return { settings: whole.data, repaired: [] };
  const obj = raw && typeof raw === 'object' ? (raw as Record<string, unknown>) : {};
  const kept: Record<string, unknown> = {};
  const repaired: string[] = [];
  for (const [key, schema] of Object.entries(Settings.shape)) {
    if (!(key in obj)) continue;
    if (schema.safeParse(obj[key]).success) kept[key] = obj[key];
    else repaired.push(key);
  }
  return { settings: Settings.parse(kept), repaired };
}

export class SettingsService {
  private current: Settings;

  constructor(
    private backend: SettingsBackend,
    private onChange: (s: Settings) => void = () => {},
    log: (line: string) => void = () => {},
  ) {
    const { settings, repaired } = repairSettings(backend.read());
    this.current = settings;
    if (repaired.length) log(`settings: reset invalid keys to defaults: ${repaired.join(', ')}`);
    backend.write(settings);
  }

  get(): Settings {
    return structuredClone(this.current);
  }

  update(patch: SettingsPatch): Settings {
    const checked = SettingsPatch.safeParse(patch);
    if (!checked.success) throw new AtelierError('BAD_REQUEST', `Invalid settings: ${describeZodError(checked.error)}.`);
    const next = Settings.parse({ ...this.current, ...checked.data });
    this.backend.write(next);
    this.current = next;
    this.onChange(this.get());
    return this.get();
  }
}
