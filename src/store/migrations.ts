import { LINKED_SCHEMA } from '../linked/schema.ts';
import { RECOVERY_SCHEMA } from '../recovery/schema.ts';
import { ARCHIVE_FOLDERS_SCHEMA, ARCHIVE_SCHEMA } from '../archive/schema.ts';
import { RESTORE_SCHEMA, RESTORE_STEPS_SCHEMA } from '../restore/schema.ts';
import { PRODUCTION_SCHEMA } from '../production/schema.ts';

/**
 * Append only: never edit a migration that has shipped. Index i upgrades user_version i to i+1.
 * Each capability keeps its tables in its own folder; this list fixes their order.
 */
export const MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
  );

  -- Transactions taken from the homeserver. The key is txnId plus a hash of the body, because
  -- Synapse on SQLite restarts txnIds at 1 after a restart.
  CREATE TABLE as_transactions (
    dedupe_key TEXT PRIMARY KEY,
    txn_id TEXT NOT NULL,
    received_ts INTEGER NOT NULL
  );

  -- Events durably taken but not yet handled; handled in order by one worker.
  CREATE TABLE inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL CHECK (kind IN ('pdu', 'ephemeral')),
    event_id TEXT UNIQUE,
    room_id TEXT,
    payload TEXT NOT NULL,
    received_ts INTEGER NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done', 'failed')),
    error TEXT
  );
  CREATE INDEX inbox_pending ON inbox (state, seq);

  CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    type TEXT NOT NULL,
    args TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled', 'interrupted')),
    origin TEXT NOT NULL CHECK (origin IN ('room', 'terminal')),
    requested_by TEXT,
    room_id TEXT,
    command_event_id TEXT UNIQUE,
    status_event_id TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER,
    failed INTEGER NOT NULL DEFAULT 0,
    checkpoint TEXT,
    result TEXT,
    error TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    resumed_count INTEGER NOT NULL DEFAULT 0,
    created_ts INTEGER NOT NULL,
    started_ts INTEGER,
    finished_ts INTEGER,
    updated_ts INTEGER NOT NULL
  );
  CREATE INDEX jobs_state ON jobs (state);

  CREATE TABLE job_errors (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    item TEXT NOT NULL,
    code TEXT NOT NULL,
    message TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (job_id, item)
  );
  `,
  RECOVERY_SCHEMA,
  LINKED_SCHEMA,
  ARCHIVE_SCHEMA,
  RESTORE_SCHEMA,
  PRODUCTION_SCHEMA,
  RESTORE_STEPS_SCHEMA,
  ARCHIVE_FOLDERS_SCHEMA,
];
