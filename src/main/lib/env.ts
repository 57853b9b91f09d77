/**
 * The environment Atelier's child processes (the Python worker, pip/uv) get:
 * the app's own, minus its secrets. The OpenAI key and the web mode's token
 * are the app's business; a worker traceback, a crash dump of the worker or a
 * package installer's log must not be able to carry them.
 */
const SECRET_NAME = /^OPENAI_|^HF_TOKEN$|(_KEY|_SECRET|_TOKEN|_PASSWORD|_PASSWD)$/i;

export function isSecretEnvName(name: string): boolean {
  return SECRET_NAME.test(name);
}

export function childEnv(extra: Record<string, string | undefined> = {}, base: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(base)) if (!isSecretEnvName(k)) env[k] = v;
  return { ...env, ...extra };
}
