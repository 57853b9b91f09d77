/**
 * Training jobs in SQLite (the history database's file, migration 3): one row
 * per job with its config and state, and its loss curve one row per step.
 * Loss rows arrive in batches (at checkpoints and every few seconds), so a
 * training of 0.1 s steps does not fsync ten times a second.
 */
import type Database from 'better-sqlite3';
import type { SkippedFile, TrainingConfig, TrainingJob, TrainingSample, TrainingState } from '../../../shared/contract';
import { AtelierError } from '../../../shared/errors';

interface Row {
  id: string;
  name: string;
  dataset_id: string;
  dataset_name: string;
  model_id: string;
  model_name: string;
  trigger: string;
  config_json: string;
  state: TrainingState;
  phase: string;
  message: string;
  step: number;
  total: number;
  checkpoint_step: number;
  images: number;
  skipped_json: string;
  samples_json: string;
  output_path: string | null;
  output_model_id: string | null;
  error_json: string | null;
  seconds: number;
  created_at: string;
  updated_at: string;
}

export interface StoredJob extends TrainingJob {
  outputPath: string | null;
}

const toJob = (r: Row): StoredJob => ({
  id: r.id,
  name: r.name,
  datasetId: r.dataset_id,
  datasetName: r.dataset_name,
  modelId: r.model_id,
  modelName: r.model_name,
  trigger: r.trigger,
  config: JSON.parse(r.config_json) as TrainingConfig,
  state: r.state,
  phase: r.phase,
  message: r.message,
  step: r.step,
  total: r.total,
  loss: null,
  lr: null,
  itPerSec: null,
  etaSec: null,
  checkpointStep: r.checkpoint_step,
  images: r.images,
  skipped: JSON.parse(r.skipped_json) as SkippedFile[],
  samples: JSON.parse(r.samples_json) as TrainingSample[],
  outputModelId: r.output_model_id,
  outputPath: r.output_path,
  error: r.error_json ? JSON.parse(r.error_json) : null,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  seconds: r.seconds,
});

export class TrainingStore {
  constructor(private db: Database.Database) {}

  insert(j: StoredJob): void {
    this.db
      .prepare(
        `INSERT INTO training_jobs (id, name, dataset_id, dataset_name, model_id, model_name, trigger, config_json, state, phase, message, step, total,
          checkpoint_step, images, skipped_json, samples_json, output_path, output_model_id, error_json, seconds, created_at, updated_at)
         VALUES (@id, @name, @dataset_id, @dataset_name, @model_id, @model_name, @trigger, @config_json, @state, @phase, @message, @step, @total,
          @checkpoint_step, @images, @skipped_json, @samples_json, @output_path, @output_model_id, @error_json, @seconds, @created_at, @updated_at)`,
      )
      .run(this.toRow(j));
  }

  private toRow(j: StoredJob): Row {
    return {
      id: j.id,
      name: j.name,
      dataset_id: j.datasetId,
      dataset_name: j.datasetName,
      model_id: j.modelId,
      model_name: j.modelName,
      trigger: j.trigger,
      config_json: JSON.stringify(j.config),
      state: j.state,
      phase: j.phase,
      message: j.message,
      step: j.step,
      total: j.total,
      checkpoint_step: j.checkpointStep,
      images: j.images,
      skipped_json: JSON.stringify(j.skipped),
      samples_json: JSON.stringify(j.samples),
      output_path: j.outputPath,
      output_model_id: j.outputModelId,
      error_json: j.error ? JSON.stringify(j.error) : null,
      seconds: j.seconds,
      created_at: j.createdAt,
      updated_at: j.updatedAt,
    };
  }

  /** Persist the job's state (everything but the loss curve). */
  save(j: StoredJob): void {
    j.updatedAt = new Date().toISOString();
    const r = this.toRow(j);
    this.db
      .prepare(
        `UPDATE training_jobs SET state=@state, phase=@phase, message=@message, step=@step, total=@total, checkpoint_step=@checkpoint_step,
          images=@images, skipped_json=@skipped_json, samples_json=@samples_json, output_path=@output_path, output_model_id=@output_model_id,
          error_json=@error_json, seconds=@seconds, updated_at=@updated_at WHERE id=@id`,
      )
      .run(r);
  }

  get(id: string): StoredJob {
    const row = this.db.prepare('SELECT * FROM training_jobs WHERE id = ?').get(id) as Row | undefined;
    if (!row) throw new AtelierError('NOT_FOUND', `No training job ${id}.`);
    return toJob(row);
  }

  list(): StoredJob[] {
    return (this.db.prepare('SELECT * FROM training_jobs ORDER BY created_at DESC').all() as Row[]).map(toJob);
  }

  delete(id: string): boolean {
    return this.db.prepare('DELETE FROM training_jobs WHERE id = ?').run(id).changes > 0;
  }

  /** Append (or overwrite) loss points in one transaction. */
  addLoss(jobId: string, points: [number, number][]): void {
    if (!points.length) return;
    const ins = this.db.prepare('INSERT OR REPLACE INTO training_loss (job_id, step, loss) VALUES (?, ?, ?)');
    this.db.transaction(() => {
      for (const [step, loss] of points) ins.run(jobId, step, Number.isFinite(loss) ? loss : 0);
    })();
  }

  /** Forget the points after a step (a resume redoes the steps after its checkpoint). */
  truncateLoss(jobId: string, afterStep: number): void {
    this.db.prepare('DELETE FROM training_loss WHERE job_id = ? AND step > ?').run(jobId, afterStep);
  }

  replaceLoss(jobId: string, points: [number, number][]): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM training_loss WHERE job_id = ?').run(jobId);
      this.addLoss(jobId, points);
    })();
  }

  loss(jobId: string): [number, number][] {
    return (this.db.prepare('SELECT step, loss FROM training_loss WHERE job_id = ? ORDER BY step').all(jobId) as { step: number; loss: number }[]).map((r) => [r.step, r.loss]);
  }
}
