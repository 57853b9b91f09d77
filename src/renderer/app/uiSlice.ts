import type { SliceCreator } from './store';

export type Route = 'generate' | 'canvas' | 'gallery' | 'training' | 'settings';
export interface Toast {
  id: number;
  kind: 'error' | 'info';
  text: string;
}

export interface UiSlice {
  route: Route;
  toasts: Toast[];
  connected: boolean;
  go(route: Route): void;
  toast(kind: Toast['kind'], text: string): void;
  dismissToast(id: number): void;
}

let toastSeq = 0;

export const createUiSlice: SliceCreator<UiSlice> = (set, get) => ({
  route: 'generate',
  toasts: [],
  connected: true,
  go: (route) => set({ route }),
  toast: (kind, text) => {
    const id = ++toastSeq;
    set((s) => ({ toasts: [...s.toasts.slice(-3), { id, kind, text }] }));
    setTimeout(() => get().dismissToast(id), kind === 'error' ? 10000 : 4000);
  },
  dismissToast: (id) => set((s) => ({ toasts: s.toasts.filter((t) => t.id !== id) })),
});
