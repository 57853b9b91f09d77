/**
 * The preload exposes the contract and nothing else: `window.atelier.call`
 * for the allowlisted method names and `window.atelier.on` for events. No raw
 * ipcRenderer, no Node. Runs sandboxed; bundled by esbuild.
 */
import { contextBridge, ipcRenderer, webUtils, type IpcRendererEvent } from 'electron';
import { isEventName, isMethodName } from '../shared/contract';

const api = {
  shell: 'electron' as const,
  call(method: string, input: unknown): Promise<unknown> {
    if (!isMethodName(method)) return Promise.resolve({ ok: false, error: { code: 'BAD_REQUEST', message: `Unknown method ${method}` } });
    return ipcRenderer.invoke('atelier:call', method, input);
  },
  on(listener: (name: string, payload: unknown) => void): () => void {
    const handler = (_event: IpcRendererEvent, name: unknown, payload: unknown) => {
      if (isEventName(name)) listener(name, payload);
    };
    ipcRenderer.on('atelier:event', handler);
    return () => ipcRenderer.removeListener('atelier:event', handler);
  },
  /** The path of a file dropped on the page (model import); a path string, nothing more. */
  pathForFile(file: File): string {
    return webUtils.getPathForFile(file);
  },
};

contextBridge.exposeInMainWorld('atelier', api);
