/**
 * Where the OpenAI key lives. Never in SQLite, the settings file or a log: in the Electron app it
 * is encrypted with the OS keychain (safeStorage) into a file of its own; in the web mode and the
 * CLI it is read from OPENAI_API_KEY and cannot be set from the page.
 */
import fs from 'node:fs';
import path from 'node:path';
import { AtelierError } from '../../../shared/errors';
import { writeFileAtomic } from '../../lib/fsx';

export interface StoredKey {
  key: string;
  source: 'keychain' | 'env';
}

export interface KeyStore {
  /** A key can be stored (and cleared) through the app. */
  readonly writable: boolean;
  get(): StoredKey | null;
  set(key: string): void;
  clear(): void;
}

export function envKeyStore(env: NodeJS.ProcessEnv = process.env): KeyStore {
  const refuse = () => {
    throw new AtelierError('BAD_REQUEST', 'Here the OpenAI key comes from the OPENAI_API_KEY environment variable: set it before starting Atelier (the key is never stored by the web mode).');
  };
  return {
    writable: false,
    get: () => {
      const key = env.OPENAI_API_KEY?.trim();
      return key ? { key, source: 'env' } : null;
    },
    set: refuse,
    clear: refuse,
  };
}

/** What Electron's safeStorage offers (passed in, so this file never imports electron). */
export interface Encryptor {
  isEncryptionAvailable(): boolean;
  encryptString(plain: string): Buffer;
  decryptString(encrypted: Buffer): string;
}

/**
 * The key encrypted by the OS keychain into `file` (written atomically, mode 0600). When the
 * keychain is unavailable (a Linux session without a secret service) it refuses to store rather
 * than writing the key in the clear; OPENAI_API_KEY still works then.
 */
export function encryptedFileKeyStore(file: string, crypto: Encryptor, env: NodeJS.ProcessEnv = process.env): KeyStore {
  const fromEnv = envKeyStore(env);
  return {
    writable: true,
    get() {
      if (fs.existsSync(file)) {
        try {
          const key = crypto.decryptString(fs.readFileSync(file));
          if (key) return { key, source: 'keychain' };
        } catch {
          // A keychain that changed (another OS user, a reset): unreadable; the status shows no key
          // (or the environment's), and entering it again replaces the file.
        }
      }
      return fromEnv.get();
    },
    set(key) {
      if (!crypto.isEncryptionAvailable()) {
        throw new AtelierError('BAD_REQUEST', 'The OS keychain is not available, so the key cannot be stored safely. Set OPENAI_API_KEY in the environment instead.');
      }
      fs.mkdirSync(path.dirname(file), { recursive: true });
      writeFileAtomic(file, crypto.encryptString(key));
      fs.chmodSync(file, 0o600);
    },
    clear() {
      fs.rmSync(file, { force: true });
    },
  };
}
