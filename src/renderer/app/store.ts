/**
 * One zustand store made of feature slices (zustand's slices pattern).
 * Fast-changing values (progress, previews) live in the jobs slice and are
 * read with single-value selectors so only the progress area re-renders.
 */
import { create } from 'zustand';
import { createCanvasSlice, type CanvasSlice } from '../features/canvas/slice';
import { createGallerySlice, type GallerySlice } from '../features/gallery/slice';
import { createGenerateSlice, type GenerateSlice } from '../features/generate/slice';
import { createJobsSlice, type JobsSlice } from '../features/jobs/slice';
import { createModelsSlice, type ModelsSlice } from '../features/models/slice';
import { createSettingsSlice, type SettingsSlice } from '../features/settings/slice';
import { createTrainingSlice, type TrainingSlice } from '../features/training/slice';
import { createUiSlice, type UiSlice } from './uiSlice';

export type AppState = UiSlice & GenerateSlice & JobsSlice & GallerySlice & SettingsSlice & CanvasSlice & TrainingSlice & ModelsSlice;
export type SliceCreator<T> = (set: (partial: Partial<AppState> | ((s: AppState) => Partial<AppState>)) => void, get: () => AppState) => T;

export const useStore = create<AppState>()((set, get) => ({
  ...createUiSlice(set, get),
  ...createGenerateSlice(set, get),
  ...createJobsSlice(set, get),
  ...createGallerySlice(set, get),
  ...createSettingsSlice(set, get),
  ...createCanvasSlice(set, get),
  ...createTrainingSlice(set, get),
  ...createModelsSlice(set, get),
}));
