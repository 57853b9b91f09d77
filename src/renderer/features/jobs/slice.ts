import type { Job, JobProgress } from '../../../shared/contract';
import type { SliceCreator } from '../../app/store';
import { client } from '../../lib/client';

export interface JobsSlice {
  jobs: Job[];
  progress: Record<string, JobProgress>;
  /** Latest preview per job, kept apart so a step without a preview keeps the last picture. */
  previews: Record<string, string>;
  /** The job whose result the stage shows. */
  focusJobId: string | null;
  applyJob(job: Job): void;
  applyProgress(p: JobProgress): void;
  cancelJob(id: string): Promise<void>;
  /** Put a queued job at `index` among the queued ones (0 = next). */
  moveJob(id: string, index: number): Promise<void>;
  retryJob(id: string): Promise<void>;
  loadJobs(): Promise<void>;
}

/** Every queued or running job, and the 50 latest finished ones. */
export function keepRecent(jobs: Job[]): Job[] {
  const finished = jobs.filter((j) => j.state !== 'queued' && j.state !== 'running');
  if (finished.length <= 50) return jobs;
  const drop = new Set(finished.slice(0, finished.length - 50));
  return jobs.filter((j) => !drop.has(j));
}

export const createJobsSlice: SliceCreator<JobsSlice> = (set, get) => ({
  jobs: [],
  progress: {},
  previews: {},
  focusJobId: null,
  applyJob: (job) =>
    set((s) => {
      const i = s.jobs.findIndex((j) => j.id === job.id);
      const jobs = i >= 0 ? s.jobs.map((j) => (j.id === job.id ? job : j)) : [...s.jobs, job];
      const focus = job.state === 'running' || (i < 0 && !s.jobs.some((j) => j.state === 'running')) ? job.id : s.focusJobId;
      return { jobs: keepRecent(jobs), focusJobId: focus };
    }),
  applyProgress: (p) =>
    set((s) => ({
      progress: { ...s.progress, [p.jobId]: p },
      previews: p.preview ? { ...s.previews, [p.jobId]: p.preview } : s.previews,
    })),
  cancelJob: async (id) => {
    try {
      const r = await client.call('jobs.cancel', { id });
      if (!r.cancelled) get().toast('info', 'That job had already finished.');
    } catch (err) {
      get().toast('error', (err as Error).message);
    }
  },
  moveJob: async (id, index) => {
    try {
      const jobs = await client.call('jobs.move', { id, index });
      set({ jobs: keepRecent(jobs) });
    } catch (err) {
      get().toast('error', (err as Error).message);
    }
  },
  retryJob: async (id) => {
    try {
      const job = await client.call('jobs.retry', { id });
      get().applyJob(job);
    } catch (err) {
      get().toast('error', (err as Error).message);
    }
  },
  loadJobs: async () => {
    const jobs = await client.call('jobs.list');
    set({ jobs });
  },
});
