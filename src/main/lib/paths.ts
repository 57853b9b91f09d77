import os from 'node:os';
import path from 'node:path';

/** The same folder Electron's app.getPath('userData') gives for "Atelier", so the app and web mode share one library. */
export function defaultDataDir(): string {
  if (process.env.ATELIER_DATA_DIR) return path.resolve(process.env.ATELIER_DATA_DIR);
  if (process.platform === 'win32') return path.join(process.env.APPDATA ?? path.join(os.homedir(), 'AppData', 'Roaming'), 'Atelier');
  if (process.platform === 'darwin') return path.join(os.homedir(), 'Library', 'Application Support', 'Atelier');
  return path.join(process.env.XDG_CONFIG_HOME || path.join(os.homedir(), '.config'), 'Atelier');
}

/** Settings file name shared by electron-store (app) and conf (web, CLI). */
export const SETTINGS_NAME = 'settings';
