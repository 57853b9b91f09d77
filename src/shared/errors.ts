/**
 * Typed error codes: every failure that crosses a process boundary carries one
 * of these plus a message written for a person. Codes are stable (tests and UI
 * logic branch on them); messages may change.
 */
export const ERROR_CODES = [
  'BAD_REQUEST', // input failed validation; message names the field
  'NOT_FOUND', // the thing asked for does not exist (history id, file)
  'UNAUTHORIZED', // transport refused the caller
  'RUNTIME_UNAVAILABLE', // the Python runtime is not provisioned or cannot start
  'RUNTIME_CRASHED', // the worker died or hung while serving the request
  'MODEL_NOT_FOUND',
  'NOT_A_MODEL',
  'OUT_OF_MEMORY',
  'CANCELLED',
  'DISK_FULL',
  'CLOUD_AUTH', // no OpenAI key, or the key was refused
  'CLOUD_REFUSED', // OpenAI declined the request (content policy, bad option, model not available)
  'CLOUD_RATE_LIMITED', // 429 after the retries, or the account is out of credit
  'CLOUD_UNAVAILABLE', // no network, timeouts, OpenAI server errors after the retries
  'OVER_BUDGET', // the request would pass the monthly cloud budget and was not confirmed
  'BLOCKED_TERMS', // the prompt contains a term blocked on this machine
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

export interface ErrorPayload {
  code: ErrorCode;
  message: string;
  detail?: string;
}

/** The one error class services throw; transports serialise it as ErrorPayload. */
export class AtelierError extends Error {
  readonly code: ErrorCode;
  readonly detail?: string;
  constructor(code: ErrorCode, message: string, detail?: string) {
    super(message);
    this.name = 'AtelierError';
    this.code = code;
    this.detail = detail;
  }
  toPayload(): ErrorPayload {
    return this.detail ? { code: this.code, message: this.message, detail: this.detail } : { code: this.code, message: this.message };
  }
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && (ERROR_CODES as readonly string[]).includes(value);
}

/** Turn anything thrown into a payload; unknown errors become INTERNAL without leaking stack traces to the page. */
export function toErrorPayload(err: unknown): ErrorPayload {
  if (err instanceof AtelierError) return err.toPayload();
  const e = err as { code?: string; message?: string } | undefined;
  if (e && (e.code === 'ENOSPC' || e.code === 'EDQUOT')) {
    return { code: 'DISK_FULL', message: 'The disk is full: free some space and try again. Nothing was saved half.' };
  }
  return { code: 'INTERNAL', message: `Something went wrong inside Atelier: ${e?.message ?? String(err)}` };
}
