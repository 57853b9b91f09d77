/**
 * Versioned schema migrations, applied in order at start. `PRAGMA user_version`
 * holds the number of migrations applied. Never edit a shipped migration: add one.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: models, generations, images
  `
  CREATE TABLE models (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    path        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL CHECK (kind IN ('checkpoint','lora','controlnet','vae')),
    format      TEXT NOT NULL CHECK (format IN ('diffusers','single_file')),
    family      TEXT NOT NULL,
    size_bytes  INTEGER NOT NULL,
    source      TEXT NOT NULL,
    hash        TEXT,
    added_at    TEXT NOT NULL
  );

  CREATE TABLE generations (
    id               TEXT PRIMARY KEY,
    created_at       TEXT NOT NULL,
    backend          TEXT NOT NULL CHECK (backend IN ('local','cloud')),
    mode             TEXT NOT NULL,
    prompt           TEXT NOT NULL,
    negative_prompt  TEXT NOT NULL DEFAULT '',
    model_id         TEXT REFERENCES models(id) ON DELETE SET NULL,
    model_name       TEXT NOT NULL,
    model_hash       TEXT,
    sampler          TEXT NOT NULL,
    steps            INTEGER NOT NULL,
    cfg              REAL NOT NULL,
    seed             INTEGER NOT NULL,
    width            INTEGER NOT NULL,
    height           INTEGER NOT NULL,
    batch            INTEGER NOT NULL,
    strength         REAL,
    control_json     TEXT,
    loras_json       TEXT NOT NULL DEFAULT '[]',
    device           TEXT,
    timings_json     TEXT NOT NULL DEFAULT '{}',
    cost_usd         REAL,
    params_json      TEXT NOT NULL
  );
  CREATE INDEX generations_created ON generations(created_at DESC);

  CREATE TABLE images (
    id               TEXT PRIMARY KEY,
    generation_id    TEXT NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
    idx              INTEGER NOT NULL,
    path             TEXT NOT NULL UNIQUE,
    sha256           TEXT NOT NULL,
    width            INTEGER NOT NULL,
    height           INTEGER NOT NULL,
    seed             INTEGER NOT NULL,
    parent_image_id  TEXT REFERENCES images(id) ON DELETE SET NULL,
    created_at       TEXT NOT NULL,
    UNIQUE (generation_id, idx)
  );
  CREATE INDEX images_generation ON images(generation_id);
  `,
  // 2: the size a checkpoint was trained at, so the UI and CLI default to it (512 SD 1.5, 1024 SDXL, 64 the shapes demo)
  `
  ALTER TABLE models ADD COLUMN native_size INTEGER;
  `,
  // 3: LoRA training jobs (config and state) and their loss curves (one row per step, flushed in batches)
  `
  CREATE TABLE training_jobs (
    id               TEXT PRIMARY KEY,
    name             TEXT NOT NULL,
    dataset_id       TEXT NOT NULL,
    dataset_name     TEXT NOT NULL,
    model_id         TEXT NOT NULL,
    model_name       TEXT NOT NULL,
    trigger          TEXT NOT NULL DEFAULT '',
    config_json      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('queued','running','paused','interrupted','done','failed','cancelled')),
    phase            TEXT NOT NULL DEFAULT '',
    message          TEXT NOT NULL DEFAULT '',
    step             INTEGER NOT NULL DEFAULT 0,
    total            INTEGER NOT NULL,
    checkpoint_step  INTEGER NOT NULL DEFAULT 0,
    images           INTEGER NOT NULL DEFAULT 0,
    skipped_json     TEXT NOT NULL DEFAULT '[]',
    samples_json     TEXT NOT NULL DEFAULT '[]',
    output_path      TEXT,
    output_model_id  TEXT REFERENCES models(id) ON DELETE SET NULL,
    error_json       TEXT,
    seconds          REAL NOT NULL DEFAULT 0,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL
  );
  CREATE INDEX training_jobs_created ON training_jobs(created_at DESC);

  CREATE TABLE training_loss (
    job_id  TEXT NOT NULL REFERENCES training_jobs(id) ON DELETE CASCADE,
    step    INTEGER NOT NULL,
    loss    REAL NOT NULL,
    PRIMARY KEY (job_id, step)
  ) WITHOUT ROWID;
  `,
  // 4: search (FTS5 over prompts, model and LoRA names), favorites, boards, the result cache key, the persistent queue
  `
  ALTER TABLE generations ADD COLUMN favorite INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE generations ADD COLUMN cache_key TEXT;
  ALTER TABLE models ADD COLUMN hash_key TEXT;
  CREATE INDEX generations_cache ON generations(cache_key) WHERE cache_key IS NOT NULL;
  CREATE INDEX generations_model ON generations(model_name, created_at DESC);
  CREATE INDEX generations_favorite ON generations(created_at DESC) WHERE favorite = 1;

  CREATE VIRTUAL TABLE generations_fts USING fts5(prompt, negative_prompt, model_name, loras, tokenize = 'unicode61 remove_diacritics 2');
  INSERT INTO generations_fts (rowid, prompt, negative_prompt, model_name, loras)
    SELECT rowid, prompt, negative_prompt, model_name, (SELECT group_concat(json_extract(value, '$.name'), ' ') FROM json_each(loras_json)) FROM generations;
  CREATE TRIGGER generations_fts_insert AFTER INSERT ON generations BEGIN
    INSERT INTO generations_fts (rowid, prompt, negative_prompt, model_name, loras)
      VALUES (new.rowid, new.prompt, new.negative_prompt, new.model_name, (SELECT group_concat(json_extract(value, '$.name'), ' ') FROM json_each(new.loras_json)));
  END;
  CREATE TRIGGER generations_fts_delete AFTER DELETE ON generations BEGIN
    DELETE FROM generations_fts WHERE rowid = old.rowid;
  END;

  CREATE TABLE boards (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at  TEXT NOT NULL
  );
  CREATE TABLE board_items (
    board_id       TEXT NOT NULL REFERENCES boards(id) ON DELETE CASCADE,
    generation_id  TEXT NOT NULL REFERENCES generations(id) ON DELETE CASCADE,
    added_at       TEXT NOT NULL,
    PRIMARY KEY (board_id, generation_id)
  ) WITHOUT ROWID;
  CREATE INDEX board_items_generation ON board_items(generation_id);

  CREATE TABLE queue (
    id           TEXT PRIMARY KEY,
    position     REAL NOT NULL,
    params_json  TEXT NOT NULL,
    model_name   TEXT NOT NULL,
    created_at   TEXT NOT NULL
  );
  `,
  // 5: LoRA filter through an index instead of json_each over every row (26x the bare page at 100k rows)
  `
  CREATE TABLE generation_loras (
    generation_id  TEXT NOT NULL,
    name           TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    PRIMARY KEY (generation_id, name)
  ) WITHOUT ROWID;
  CREATE INDEX generation_loras_name ON generation_loras(name, created_at DESC);
  INSERT OR IGNORE INTO generation_loras (generation_id, name, created_at)
    SELECT g.id, json_extract(j.value, '$.name'), g.created_at FROM generations g, json_each(g.loras_json) j WHERE json_extract(j.value, '$.name') IS NOT NULL;
  CREATE TRIGGER generation_loras_insert AFTER INSERT ON generations BEGIN
    INSERT OR IGNORE INTO generation_loras (generation_id, name, created_at)
      SELECT new.id, json_extract(value, '$.name'), new.created_at FROM json_each(new.loras_json) WHERE json_extract(value, '$.name') IS NOT NULL;
  END;
  CREATE TRIGGER generation_loras_delete AFTER DELETE ON generations BEGIN
    DELETE FROM generation_loras WHERE generation_id = old.id;
  END;
  `,
  // 6: cloud images: the prompt the model actually used (DALL·E 3 rewrites prompts); spend by month
  `
  ALTER TABLE generations ADD COLUMN revised_prompt TEXT;
  CREATE INDEX generations_cloud_spend ON generations(created_at) WHERE backend = 'cloud';
  `,
];
