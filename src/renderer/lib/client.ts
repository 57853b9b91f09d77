/**
 * The contract client: the only way the renderer reaches the services. In
 * Electron it goes through the preload's `window.atelier`; in a browser it
 * speaks the same calls over the web mode's WebSocket. Outputs and events are
 * validated against the contract on arrival.
 */
import {
  events,
  methods,
  type EventName,
  type EventPayload,
  type MethodInput,
  type MethodName,
  type MethodOutput,
} from '../../shared/contract';
import type { ErrorPayload } from '../../shared/errors';

export class ClientError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly detail?: string,
  ) {
    super(message);
  }
}

type Reply = { ok: true; value: unknown } | { ok: false; error: ErrorPayload };

export interface Transport {
  call(method: string, input: unknown): Promise<Reply>;
  on(listener: (name: string, payload: unknown) => void): () => void;
  onConnection?(listener: (connected: boolean) => void): () => void;
  fileUrl(rel: string): string;
  /** Desktop only: the path of a dropped file (the browser never sees paths). */
  pathForFile?(file: File): string | null;
}

declare global {
  interface Window {
    atelier?: {
      shell: 'electron';
      call(method: string, input: unknown): Promise<Reply>;
      on(listener: (name: string, payload: unknown) => void): () => void;
      pathForFile?(file: File): string;
    };
  }
}

function electronTransport(api: NonNullable<Window['atelier']>): Transport {
  return {
    call: (m, i) => api.call(m, i),
    on: (l) => api.on(l),
    fileUrl: (rel) => `atelier://files/${rel.split('/').map(encodeURIComponent).join('/')}`,
    pathForFile: api.pathForFile ? (f) => api.pathForFile!(f) || null : undefined,
  };
}

/** WebSocket transport with reconnect; calls made while disconnected wait for the socket. */
function webSocketTransport(): Transport {
  let ws: WebSocket | null = null;
  let seq = 0;
  let delay = 250;
  const pending = new Map<number, (r: Reply) => void>();
  const listeners = new Set<(name: string, payload: unknown) => void>();
  const connListeners = new Set<(c: boolean) => void>();
  let ready: Promise<WebSocket>;

  const connect = (): Promise<WebSocket> =>
    new Promise((resolve) => {
      const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const sock = new WebSocket(`${proto}//${location.host}/ws`);
      sock.onopen = () => {
        ws = sock;
        delay = 250;
        connListeners.forEach((l) => l(true));
        resolve(sock);
      };
      sock.onmessage = (ev) => {
        const msg = JSON.parse(String(ev.data));
        if (msg.t === 'event') listeners.forEach((l) => l(msg.name, msg.payload));
        else if (msg.t === 'reply' && typeof msg.id === 'number') {
          pending.get(msg.id)?.(msg.ok ? { ok: true, value: msg.value } : { ok: false, error: msg.error });
          pending.delete(msg.id);
        }
      };
      sock.onclose = () => {
        if (ws === sock) {
          ws = null;
          connListeners.forEach((l) => l(false));
          for (const [id, done] of pending) {
            done({ ok: false, error: { code: 'RUNTIME_UNAVAILABLE', message: 'Lost the connection to Atelier. Reconnecting…' } });
            pending.delete(id);
          }
        }
        setTimeout(() => {
          ready = connect();
          ready.then(resolve);
        }, delay);
        delay = Math.min(delay * 2, 5000);
      };
    });
  ready = connect();

  return {
    async call(method, input) {
      const sock = ws ?? (await ready);
      const id = ++seq;
      return new Promise<Reply>((resolve) => {
        pending.set(id, resolve);
        sock.send(JSON.stringify({ t: 'call', id, method, input }));
      });
    },
    on(l) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    onConnection(l) {
      connListeners.add(l);
      return () => connListeners.delete(l);
    },
    fileUrl: (rel) => `/files/${rel.split('/').map(encodeURIComponent).join('/')}`,
  };
}

export class Client {
  /** Desktop only (undefined in the browser): the file system path of a dropped File. */
  readonly pathForFile?: (file: File) => string | null;

  constructor(private transport: Transport) {
    this.pathForFile = transport.pathForFile;
  }

  async call<M extends MethodName>(method: M, input?: MethodInput<M>): Promise<MethodOutput<M>> {
    const reply = await this.transport.call(method, input ?? {});
    if (!reply.ok) throw new ClientError(reply.error.code, reply.error.message, reply.error.detail);
    const parsed = methods[method].output.safeParse(reply.value);
    if (!parsed.success) throw new ClientError('INTERNAL', `Atelier answered ${method} with data the contract does not allow.`);
    return parsed.data as MethodOutput<M>;
  }

  on<E extends EventName>(name: E, listener: (payload: EventPayload<E>) => void): () => void {
    return this.transport.on((n, payload) => {
      if (n !== name) return;
      const parsed = events[name].safeParse(payload);
      if (parsed.success) listener(parsed.data as EventPayload<E>);
    });
  }

  onConnection(listener: (connected: boolean) => void): () => void {
    return this.transport.onConnection?.(listener) ?? (() => {});
  }

  fileUrl(rel: string): string {
    return this.transport.fileUrl(rel);
  }
}

export function createClient(): Client {
  return new Client(window.atelier ? electronTransport(window.atelier) : webSocketTransport());
}

// The renderer's one client. Tests import the Client class with an in-memory transport instead.
export const client: Client = typeof window === 'undefined' ? (undefined as unknown as Client) : createClient();
