/**
 * Model downloads and the welcome guide's state. Downloads run in the main process (resumable,
 * verified); the page only shows them and sends start/pause/resume/cancel.
 */
import type { DownloadRecord } from '../../../shared/contract';
import type { SliceCreator } from '../../app/store';
import { client } from '../../lib/client';

export interface ModelsSlice {
  downloads: DownloadRecord[];
  /** The welcome guide is showing. */
  firstRunOpen: boolean;
  loadDownloads(): Promise<void>;
  applyDownload(d: DownloadRecord): void;
  downloadAction(id: string, action: 'pause' | 'resume' | 'cancel' | 'remove'): Promise<void>;
  openFirstRun(): void;
  /** `done`: finished for good (not shown at the next start); otherwise it comes back next time. */
  closeFirstRun(done: boolean): void;
}

export const createModelsSlice: SliceCreator<ModelsSlice> = (set, get) => ({
  downloads: [],
  firstRunOpen: false,
  loadDownloads: async () => set({ downloads: await client.call('downloads.list') }),
  applyDownload: (d) =>
    set((s) => {
      const at = s.downloads.findIndex((x) => x.id === d.id);
      const downloads = s.downloads.slice();
      if (at >= 0) downloads[at] = d;
      else downloads.push(d);
      return { downloads };
    }),
  downloadAction: async (id, action) => {
    try {
      if (action === 'remove') {
        await client.call('downloads.remove', { id });
        set((s) => ({ downloads: s.downloads.filter((d) => d.id !== id) }));
      } else get().applyDownload(await client.call(`downloads.${action}`, { id }));
    } catch (err) {
      get().toast('error', (err as Error).message);
    }
  },
  openFirstRun: () => set({ firstRunOpen: true }),
  closeFirstRun: (done) => {
    set({ firstRunOpen: false });
    if (done && !get().settings?.firstRunDone) void get().updateSettings({ firstRunDone: true });
  },
});
