import type { Generation } from '../../../shared/contract';
import type { SliceCreator } from '../../app/store';
import { client } from '../../lib/client';

const PAGE = 60;

export interface GallerySlice {
  items: Generation[];
  total: number;
  query: string;
  loading: boolean;
  selectedId: string | null;
  setQuery(q: string): void;
  loadGallery(reset?: boolean): Promise<void>;
  loadMore(): Promise<void>;
  select(id: string | null): void;
  deleteGenerations(ids: string[]): Promise<void>;
  prependGeneration(id: string): Promise<void>;
}

let querySeq = 0;

export const createGallerySlice: SliceCreator<GallerySlice> = (set, get) => ({
  items: [],
  total: 0,
  query: '',
  loading: false,
  selectedId: null,
  setQuery: (query) => {
    set({ query });
    void get().loadGallery(true);
  },
  loadGallery: async (reset = true) => {
    const mine = ++querySeq;
    set({ loading: true });
    try {
      const page = await client.call('history.list', { query: get().query, limit: PAGE, offset: reset ? 0 : get().items.length });
      if (mine !== querySeq) return; // a newer search superseded this one
      set((s) => ({ items: reset ? page.items : [...s.items, ...page.items], total: page.total ?? s.total, loading: false }));
    } catch (err) {
      set({ loading: false });
      get().toast('error', (err as Error).message);
    }
  },
  loadMore: async () => {
    const { items, total, loading } = get();
    if (!loading && items.length < total) await get().loadGallery(false);
  },
  select: (selectedId) => set({ selectedId }),
  deleteGenerations: async (ids) => {
    try {
      await client.call('history.delete', { ids });
    } catch (err) {
      get().toast('error', (err as Error).message);
    }
  },
  prependGeneration: async (id) => {
    const g = await client.call('history.get', { id });
    const q = get().query.trim().toLowerCase();
    if (q && !g.prompt.toLowerCase().includes(q) && !g.negativePrompt.toLowerCase().includes(q)) return;
    set((s) => (s.items.some((x) => x.id === id) ? s : { items: [g, ...s.items], total: s.total + 1 }));
  },
});
