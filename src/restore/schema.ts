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

/**
 * Restore from dumps, second part (migration 7): what each step of a restored room came to, so a
 * re-run retries the steps that failed in the room already made; and the read markers of user
 * dumps, which restore users cannot set (the account-data API refuses m.fully_read) and restore
 * rooms sets once the room is back.
 */
export const RESTORE_STEPS_SCHEMA = `
  -- One row per step of a recreated room that can fail without stopping the room ('aliases': the
  -- aliases and the canonical alias; 'directory': the room directory listing; 'members'): done or
  -- failed, with the problems as a JSON array of messages. A re-run of a finished room redoes the
  -- failed ones, in the room it already made.
  CREATE TABLE restored_room_steps (
    old_room_id TEXT NOT NULL REFERENCES restored_rooms (old_room_id) ON DELETE CASCADE,
    step TEXT NOT NULL CHECK (step IN ('aliases', 'directory', 'members')),
    outcome TEXT NOT NULL CHECK (outcome IN ('done', 'failed')),
    detail TEXT NOT NULL DEFAULT '[]',
    updated_ts INTEGER NOT NULL,
    PRIMARY KEY (old_room_id, step)
  );

  -- A user's read marker (m.fully_read) in a room of the old server, from a user dump, and where
  -- setting it stands: pending (restore users recorded it), set, failed (a re-run of restore rooms
  -- tries again: the user not joined yet, the event not fetched yet) or lost (it cannot come back:
  -- the event it marks is not in the recreated room). detail says why it is not set.
  CREATE TABLE restore_read_markers (
    user_id TEXT NOT NULL,
    old_room_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'set', 'failed', 'lost')),
    detail TEXT,
    updated_ts INTEGER NOT NULL,
    PRIMARY KEY (old_room_id, user_id)
  );
`;
