/**
 * The renderer's contract client against the real dispatcher through an
 * in-memory transport (VS Code's way of testing IPC: no Electron, no socket).
 */
import { describe, expect, it } from 'vitest';
import { METHOD_NAMES } from '../../src/shared/contract';
import { createDispatcher, EventHub, type Handlers } from '../../src/main/host/dispatcher';
import { Client, ClientError, type Transport } from '../../src/renderer/lib/client';

function pair(overrides: Partial<Handlers>) {
  const table = Object.fromEntries(METHOD_NAMES.map((m) => [m, () => Promise.reject(new Error('unused'))])) as unknown as Handlers;
  const dispatch = createDispatcher({ ...table, ...overrides });
  const hub = new EventHub();
  const transport: Transport = {
    call: (m, i) => dispatch(m, JSON.parse(JSON.stringify(i ?? {}))), // structured like a real wire
    on: (l) => hub.subscribe(l),
    fileUrl: (rel) => `/files/${rel}`,
  };
  return { client: new Client(transport), hub };
}

describe('contract client over an in-memory transport', () => {
  it('round-trips a call with defaults applied on the receiving side', async () => {
    const { client } = pair({ 'history.list': (q) => ({ items: [], total: q.limit, totalCapped: false, nextOffset: null }) });
    expect(await client.call('history.list', {})).toEqual({ items: [], total: 60, totalCapped: false, nextOffset: null });
  });

  it('turns error replies into ClientError with the code', async () => {
    const { client } = pair({});
    const err = await client.call('history.get', { id: '' }).catch((e) => e);
    expect(err).toBeInstanceOf(ClientError);
    expect(err.code).toBe('BAD_REQUEST');
  });

  it('refuses output that breaks the contract instead of passing it to the UI', async () => {
    const { client } = pair({ 'app.info': () => ({ version: 1 }) as never });
    await expect(client.call('app.info')).rejects.toMatchObject({ code: 'INTERNAL' });
  });

  it('delivers typed events by name', async () => {
    const { client, hub } = pair({});
    const got: string[] = [];
    const off = client.on('history.added', (e) => got.push(e.generationId));
    hub.emit('history.deleted', { ids: ['x'] });
    hub.emit('history.added', { generationId: 'g1' });
    off();
    hub.emit('history.added', { generationId: 'g2' });
    expect(got).toEqual(['g1']);
  });
});
