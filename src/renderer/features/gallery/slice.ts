/**
 * The gallery's state: the filters, the loaded part of the history (a sparse
 * array: index i is the entry at offset i of the filtered list, `undefined`
 * until its page is fetched), the selection, boards and facets.
 *
 * Only pages the grid shows are fetched (200 rows each), so 100,000 entries
 * cost what the viewport costs. Offsets shift when an entry is added or
 * deleted; `epoch` then changes and answers to requests made before it are
 * dropped (the grid asks again).
 */
import type { Board, Generation, MethodInput } from '../../../shared/contract';
import type { SliceCreator } from '../../app/store';
import { client } from '../../lib/client';
import { dateBounds, holesToFetch, rangeIds, variationParams, type DateRange } from './recall';

export const PAGE = 200;

export interface GalleryFilters {
  query: string;
  model: string;
  lora: string;
  sampler: string;
  backend: '' | 'local' | 'cloud';
  favorite: boolean;
  range: DateRange;
  /** YYYY-MM-DD, for the custom range. */
  fromDate: string;
  toDate: string;
  boardId: string;
}

export const NO_FILTERS: GalleryFilters = { query: '', model: '', lora: '', sampler: '', backend: '', favorite: false, range: 'all', fromDate: '', toDate: '', boardId: '' };

export interface GallerySlice {
  filters: GalleryFilters;
  items: (Generation | undefined)[];
  total: number;
  totalCapped: boolean;
  /** The first page is shown and its total is being counted (`history.count`). */
  counting: boolean;
  /** The first page of the current filters is on its way. */
  galleryLoading: boolean;
  /** Changes when the list is reloaded from the top (the grid scrolls back up). */
  galleryResetSeq: number;
  selected: ReadonlySet<string>;
  /** Where a Shift-click range starts. */
  anchorId: string | null;
  /** The cell the keyboard is on. */
  focusId: string | null;
  /** The detail view is open large (Enter, double-click). */
  detailOpen: boolean;
  boards: Board[];
  facets: { models: string[]; samplers: string[]; loras: string[] };

  setFilters(patch: Partial<GalleryFilters>): void;
  loadGallery(reset?: boolean): Promise<void>;
  /** Fetch the pages that hold rows [start, end). */
  ensureRange(start: number, end: number): void;
  selectOnly(id: string | null): void;
  toggleSelect(id: string): void;
  selectRangeTo(id: string): void;
  selectAllLoaded(): void;
  clearSelection(): void;
  setFocus(id: string | null): void;
  openDetail(open: boolean): void;
  setFavorite(ids: string[], favorite: boolean): Promise<void>;
  deleteGenerations(ids: string[]): Promise<void>;
  loadBoards(): Promise<void>;
  loadFacets(): Promise<void>;
  createBoard(name: string): Promise<Board | null>;
  renameBoard(id: string, name: string): Promise<void>;
  deleteBoard(id: string): Promise<void>;
  addToBoard(boardId: string, generationIds: string[]): Promise<void>;
  removeFromBoard(boardId: string, generationIds: string[]): Promise<void>;
  exportBoard(id: string, folder: string): Promise<boolean>;
  queueVariations(g: Generation, imageIndex: number, n: number): Promise<boolean>;
  onHistoryAdded(id: string): Promise<void>;
  onHistoryDeleted(ids: string[]): void;
  onHistoryChanged(ids: string[]): Promise<void>;
}

let epoch = 0;

/** The contract takes at most 10,000 ids a call. */
const MAX_IDS = 10000;
function chunks(ids: string[]): string[][] {
  const out: string[][] = [];
  for (let i = 0; i < ids.length; i += MAX_IDS) out.push(ids.slice(i, i + MAX_IDS));
  return out;
}
let inflight: [number, number][] = [];

export function listInput(f: GalleryFilters, now = new Date()): MethodInput<'history.list'> {
  return {
    query: f.query.trim(),
    ...(f.model ? { model: f.model } : {}),
    ...(f.lora ? { lora: f.lora } : {}),
    ...(f.sampler ? { sampler: f.sampler } : {}),
    ...(f.backend ? { backend: f.backend } : {}),
    ...(f.favorite ? { favorite: true } : {}),
    ...(f.boardId ? { boardId: f.boardId } : {}),
    ...dateBounds(f.range, now, f.fromDate, f.toDate),
  };
}

export function filtersActive(f: GalleryFilters): boolean {
  return !!(f.query.trim() || f.model || f.lora || f.sampler || f.backend || f.favorite || f.boardId || f.range !== 'all');
}

export const createGallerySlice: SliceCreator<GallerySlice> = (set, get) => {
  const fail = (err: unknown) => get().toast('error', (err as Error).message);

  /** Put a fetched page at its offset; the list ends where the server says it does. */
  const place = (offset: number, page: { items: Generation[]; total: number | null; totalCapped: boolean; nextOffset: number | null }) =>
    set((s) => {
      const end = offset + page.items.length;
      let length = s.items.length;
      if (page.total !== null) length = page.totalCapped ? Math.max(page.total, end) : page.total;
      if (page.nextOffset === null) length = end;
      else if (end >= length) length = end + PAGE; // past the counted cap: more rows exist
      // Dense (undefined, never holes): filter and map must see every slot.
      const items = s.items.slice(0, length);
      while (items.length < length) items.push(undefined);
      for (let k = 0; k < page.items.length; k++) items[offset + k] = page.items[k];
      return {
        items,
        ...(page.total !== null ? { total: page.total, totalCapped: page.totalCapped } : page.nextOffset === null && !s.totalCapped ? { total: end } : {}),
      };
    });

  const fetchAt = async (offset: number) => {
    const mine = epoch;
    const range: [number, number] = [offset, offset + PAGE];
    inflight.push(range);
    try {
      const page = await client.call('history.list', { ...listInput(get().filters), limit: PAGE, offset });
      if (mine !== epoch) return;
      place(offset, page);
    } catch (err) {
      if (mine === epoch) fail(err);
    } finally {
      inflight = inflight.filter((r) => r !== range);
    }
  };

  return {
    filters: NO_FILTERS,
    items: [],
    total: 0,
    totalCapped: false,
    counting: false,
    galleryLoading: false,
    galleryResetSeq: 0,
    selected: new Set(),
    anchorId: null,
    focusId: null,
    detailOpen: false,
    boards: [],
    facets: { models: [], samplers: [], loras: [] },

    setFilters: (patch) => {
      // The selection stays while it still matches: loadGallery keeps what the new first page holds.
      set((s) => ({ filters: { ...s.filters, ...patch } }));
      void get().loadGallery(true);
    },

    loadGallery: async () => {
      const mine = ++epoch;
      inflight = [];
      set((s) => ({ galleryLoading: true, galleryResetSeq: s.galleryResetSeq + 1 }));
      try {
        const query = listInput(get().filters);
        // The page first, its count after: counting a filter no index covers visits every match.
        const page = await client.call('history.list', { ...query, limit: PAGE, offset: 0, withTotal: false });
        if (mine !== epoch) return;
        const here = new Set(page.items.map((g) => g.id));
        set((s) => {
          const selected = new Set([...s.selected].filter((id) => here.has(id)));
          return {
            items: [],
            galleryLoading: false,
            selected: selected.size === s.selected.size ? s.selected : selected,
            anchorId: s.anchorId && here.has(s.anchorId) ? s.anchorId : null,
            focusId: s.focusId && here.has(s.focusId) ? s.focusId : null,
            detailOpen: s.detailOpen && selected.size === 1,
          };
        });
        place(0, page);
        if (page.total !== null) {
          set({ counting: false });
          return;
        }
        set({ counting: true });
        const { total, capped } = await client.call('history.count', query);
        if (mine !== epoch) return;
        set((s) => {
          const length = capped ? Math.max(total, s.items.length) : total;
          const items = s.items.slice(0, length);
          while (items.length < length) items.push(undefined);
          return { items, total, totalCapped: capped, counting: false };
        });
      } catch (err) {
        if (mine !== epoch) return;
        set({ galleryLoading: false, counting: false });
        fail(err);
      }
    },

    ensureRange: (start, end) => {
      if (get().galleryLoading) return;
      for (const offset of holesToFetch(get().items, start, end, PAGE, inflight)) void fetchAt(offset);
    },

    selectOnly: (id) => set({ selected: new Set(id ? [id] : []), anchorId: id, focusId: id }),
    toggleSelect: (id) =>
      set((s) => {
        const selected = new Set(s.selected);
        if (selected.has(id)) selected.delete(id);
        else selected.add(id);
        return { selected, anchorId: id, focusId: id };
      }),
    selectRangeTo: (id) =>
      set((s) => {
        const to = s.items.findIndex((g) => g?.id === id);
        const from = s.anchorId ? s.items.findIndex((g) => g?.id === s.anchorId) : -1;
        if (to < 0) return s;
        if (from < 0) return { selected: new Set([id]), anchorId: id, focusId: id };
        return { selected: new Set(rangeIds(s.items, from, to)), focusId: id };
      }),
    selectAllLoaded: () => set((s) => ({ selected: new Set(s.items.filter((g): g is Generation => !!g).map((g) => g.id)) })),
    clearSelection: () => set({ selected: new Set(), anchorId: null, detailOpen: false }),
    setFocus: (focusId) => set({ focusId }),
    openDetail: (detailOpen) => set({ detailOpen }),

    setFavorite: async (ids, favorite) => {
      if (!ids.length) return;
      const want = new Set(ids);
      // At once in the grid; the event confirms it.
      set((s) => ({ items: s.items.map((g) => (g && want.has(g.id) && g.favorite !== favorite ? { ...g, favorite } : g)) }));
      try {
        for (const part of chunks(ids)) await client.call('history.setFavorite', { ids: part, favorite });
      } catch (err) {
        fail(err);
        void get().onHistoryChanged(ids);
      }
    },

    deleteGenerations: async (ids) => {
      if (!ids.length) return;
      try {
        let deleted = 0;
        for (const part of chunks(ids)) deleted += (await client.call('history.delete', { ids: part })).deleted;
        get().toast('info', deleted === 1 ? 'Deleted 1 generation.' : `Deleted ${deleted.toLocaleString('en-US')} generations.`);
      } catch (err) {
        fail(err);
      }
    },

    loadBoards: async () => {
      try {
        set({ boards: await client.call('boards.list') });
      } catch (err) {
        fail(err);
      }
    },
    loadFacets: async () => {
      try {
        set({ facets: await client.call('history.facets') });
      } catch (err) {
        fail(err);
      }
    },
    createBoard: async (name) => {
      try {
        const b = await client.call('boards.create', { name });
        set((s) => ({ boards: s.boards.some((x) => x.id === b.id) ? s.boards : [...s.boards, b] }));
        return b;
      } catch (err) {
        fail(err);
        return null;
      }
    },
    renameBoard: async (id, name) => {
      try {
        const b = await client.call('boards.rename', { id, name });
        set((s) => ({ boards: s.boards.map((x) => (x.id === id ? b : x)) }));
      } catch (err) {
        fail(err);
      }
    },
    deleteBoard: async (id) => {
      try {
        await client.call('boards.delete', { id });
        set((s) => ({ boards: s.boards.filter((x) => x.id !== id) }));
        if (get().filters.boardId === id) get().setFilters({ boardId: '' });
      } catch (err) {
        fail(err);
      }
    },
    addToBoard: async (boardId, generationIds) => {
      if (!generationIds.length) return;
      try {
        let b: Board | null = null;
        for (const part of chunks(generationIds)) b = await client.call('boards.add', { id: boardId, generationIds: part });
        if (!b) return;
        const board = b;
        set((s) => ({ boards: s.boards.map((x) => (x.id === board.id ? board : x)) }));
        get().toast('info', `Added ${generationIds.length === 1 ? '1 generation' : `${generationIds.length} generations`} to “${b.name}”.`);
      } catch (err) {
        fail(err);
      }
    },
    removeFromBoard: async (boardId, generationIds) => {
      if (!generationIds.length) return;
      try {
        let b: Board | null = null;
        for (const part of chunks(generationIds)) b = await client.call('boards.remove', { id: boardId, generationIds: part });
        if (!b) return;
        const board = b;
        set((s) => ({ boards: s.boards.map((x) => (x.id === board.id ? board : x)) }));
        if (get().filters.boardId === boardId) void get().loadGallery(true);
      } catch (err) {
        fail(err);
      }
    },
    exportBoard: async (id, folder) => {
      try {
        const r = await client.call('boards.export', { id, folder });
        get().toast('info', `Exported ${r.images === 1 ? '1 image' : `${r.images} images`} to ${r.folder}.`);
        return true;
      } catch (err) {
        fail(err);
        return false;
      }
    },

    queueVariations: async (g, imageIndex, n) => {
      const { params, error } = variationParams(g, imageIndex, n);
      if (error) {
        get().toast('error', error);
        return false;
      }
      try {
        await client.call('jobs.submitMany', { items: params });
        const s0 = params[0].seed;
        get().toast('info', `Queued ${n} ${n === 1 ? 'variation' : 'variations'}: seeds ${s0}${n > 1 ? `–${params[n - 1].seed}` : ''}.`);
        return true;
      } catch (err) {
        fail(err);
        return false;
      }
    },

    onHistoryAdded: async (id) => {
      try {
        // Where it lands under the current filters (FTS, board, dates…): the server's answer, not a guess.
        const page = await client.call('history.list', { ...listInput(get().filters), limit: 20, offset: 0, withTotal: false });
        const at = page.items.findIndex((g) => g.id === id);
        if (at < 0 || get().items.some((g) => g?.id === id)) return;
        epoch++;
        inflight = [];
        set((s) => {
          const items = s.items.slice();
          items.splice(Math.min(at, items.length), 0, page.items[at]);
          return { items, total: page.total ?? s.total + 1 };
        });
      } catch {
        /* the next load shows it */
      }
    },

    onHistoryDeleted: (ids) => {
      const gone = new Set(ids);
      const s = get();
      const loaded = s.items.filter((g) => g && gone.has(g.id)).length;
      const holes = s.items.some((g) => !g);
      const selected = new Set([...s.selected].filter((id) => !gone.has(id)));
      epoch++;
      inflight = [];
      if (loaded < ids.length && holes) {
        // Some were outside what is loaded: offsets moved by an unknown amount.
        set({ selected });
        void get().loadGallery(true);
        return;
      }
      set({
        items: s.items.filter((g) => !g || !gone.has(g.id)),
        total: Math.max(0, s.total - loaded),
        selected,
        focusId: s.focusId && gone.has(s.focusId) ? null : s.focusId,
        anchorId: s.anchorId && gone.has(s.anchorId) ? null : s.anchorId,
        detailOpen: selected.size === 1 ? s.detailOpen : false,
      });
      void get().loadBoards();
    },

    onHistoryChanged: async (ids) => {
      const want = new Set(ids);
      const loaded = get().items.filter((g): g is Generation => !!g && want.has(g.id));
      if (!loaded.length) return;
      if (loaded.length > 100) return void get().loadGallery(true);
      const fresh = await Promise.all(loaded.map((g) => client.call('history.get', { id: g.id }).catch(() => null)));
      const byId = new Map(fresh.filter((g): g is Generation => !!g).map((g) => [g.id, g]));
      set((s) => ({ items: s.items.map((g) => (g && byId.has(g.id) ? byId.get(g.id) : g)) }));
    },
  };
};
