/**
 * One handler table serves the contract over every transport. The dispatcher
 * validates the method name and the input with the contract's schemas, calls
 * the handler, and turns any failure into a typed ErrorPayload, so transports
 * only move bytes.
 */
import type { z } from 'zod';
import {
  events,
  isMethodName,
  methods,
  type EventName,
  type EventPayload,
  type MethodName,
  type MethodOutput,
  type MethodParsedInput,
} from '../../shared/contract';
import { AtelierError, toErrorPayload, type ErrorPayload } from '../../shared/errors';

export type Handlers = {
  [M in MethodName]: (input: MethodParsedInput<M>) => Promise<MethodOutput<M>> | MethodOutput<M>;
};

export type Reply = { ok: true; value: unknown } | { ok: false; error: ErrorPayload };

export type Dispatch = (method: unknown, input: unknown) => Promise<Reply>;

/** "steps: must be at most 200; seed: expected number" — names every bad field. */
export function describeZodError(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => {
      const where = issue.path.length ? issue.path.join('.') : 'input';
      return `${where}: ${issue.message}`;
    })
    .join('; ');
}

export function createDispatcher(handlers: Handlers, log: (line: string) => void = () => {}): Dispatch {
  return async (method, input) => {
    if (!isMethodName(method)) {
      // Describe it without calling anything on it: a hostile frame's "method" may be an object whose toString is not a function.
      const what = typeof method === 'string' ? JSON.stringify(method.slice(0, 80)) : `(a ${Array.isArray(method) ? 'list' : method === null ? 'null' : typeof method}, not a method name)`;
      return { ok: false, error: { code: 'BAD_REQUEST', message: `Unknown method ${what}.` } };
    }
    const parsed = methods[method].input.safeParse(input ?? {});
    if (!parsed.success) {
      return { ok: false, error: { code: 'BAD_REQUEST', message: `Invalid ${method} request: ${describeZodError(parsed.error)}.` } };
    }
    try {
      const handler = handlers[method] as (input: unknown) => unknown;
      const value = await handler(parsed.data);
      return { ok: true, value };
    } catch (err) {
      const error = toErrorPayload(err);
      if (error.code === 'INTERNAL') log(`[${method}] ${(err as Error)?.stack ?? String(err)}`);
      return { ok: false, error };
    }
  };
}

type Listener = (name: EventName, payload: unknown) => void;

/** Fan-out of contract events to every connected client (windows, sockets, tests). */
export class EventHub {
  private listeners = new Set<Listener>();

  emit<E extends EventName>(name: E, payload: EventPayload<E>): void {
    // Validate on the way out too: an event the schema rejects is a bug here, not in the page.
    const checked = events[name].safeParse(payload);
    if (!checked.success) throw new AtelierError('INTERNAL', `event ${name} does not match the contract: ${describeZodError(checked.error)}`);
    for (const listener of this.listeners) listener(name, checked.data);
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
