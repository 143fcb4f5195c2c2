/** Tables of restore from dumps (migration 5). Filled in by the restore work. */
export const RESTORE_SCHEMA = `
  -- restore users
  -- Per-user outcome of a restore users job (restored, unchanged, failed) with what changed and
  -- what could not be moved, as JSON: the final report is read from here, so a job resumed after a
  -- restart still reports the users it restored before, and memory does not grow with the users.
  CREATE TABLE restore_user_results (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('restored', 'unchanged', 'failed')),
    needs_password_reset INTEGER NOT NULL DEFAULT 0,
    result TEXT NOT NULL,
    PRIMARY KEY (job_id, user_id)
  );
  -- end of restore users

  -- restore rooms
  -- One row per room of a dump that restore rooms has worked on: the old room id, the room that
  -- stands for it now (the same id when rejoined, a new one when recreated), and how far it got.
  -- A re-run reads this first, so nothing is created twice.
  CREATE TABLE restored_rooms (
    old_room_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('rejoin', 'recreate')),
    new_room_id TEXT,
    phase TEXT NOT NULL,
    acting_user TEXT,
    detail TEXT,
    updated_ts INTEGER NOT NULL
  );
  CREATE UNIQUE INDEX restored_rooms_new ON restored_rooms (new_room_id) WHERE new_room_id IS NOT NULL;

  -- Events re-posted from an archive: old id → new id, so relations point to the new events and a
  -- resumed import posts nothing twice.
  CREATE TABLE restored_events (
    old_room_id TEXT NOT NULL,
    old_event_id TEXT NOT NULL,
    new_event_id TEXT NOT NULL,
    PRIMARY KEY (old_room_id, old_event_id)
  );

  -- Where a room's history import stands: the day file and the line after the last one handled.
  CREATE TABLE restored_history (
    old_room_id TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    line INTEGER NOT NULL,
    imported INTEGER NOT NULL DEFAULT 0,
    skipped INTEGER NOT NULL DEFAULT 0,
    updated_ts INTEGER NOT NULL
  );

  -- Per-room outcome of a restore rooms job: a resumed job skips rooms already here.
  CREATE TABLE restore_room_results (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    old_room_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (job_id, old_room_id)
  );
`;
