/**
 * Tables of the room history archive (migration 4). An archive is one output folder; its rooms,
 * the ids it holds and the committed length of every day file live here, so a run appends only
 * what is new and a crash is repaired by truncating files back to what was committed.
 */
export const ARCHIVE_SCHEMA = `
  CREATE TABLE archive_rooms (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    out_dir TEXT NOT NULL,
    room_id TEXT NOT NULL,
    room_version TEXT,
    dir_name TEXT NOT NULL,
    -- Live stream token from before the last complete pass began: the next pass reads from here,
    -- so events that arrived since, whatever their depth, are read (and known ones skipped).
    stream_token TEXT,
    -- While a pass is under way: the live token it started from, and the page it has reached.
    pass_token TEXT,
    page_token TEXT,
    pass_started INTEGER NOT NULL DEFAULT 0,
    events INTEGER NOT NULL DEFAULT 0,
    bytes INTEGER NOT NULL DEFAULT 0,
    first_event_ts INTEGER,
    last_event_ts INTEGER,
    last_pass_ts INTEGER,
    last_pass_job INTEGER,
    UNIQUE (out_dir, room_id)
  );

  -- Every event id in a room's archive: a re-read page skips what is here.
  CREATE TABLE archive_events (
    room INTEGER NOT NULL REFERENCES archive_rooms (id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room, event_id)
  ) WITHOUT ROWID;

  -- Committed length of each day file; bytes past it were written by a run that did not commit.
  CREATE TABLE archive_files (
    room INTEGER NOT NULL REFERENCES archive_rooms (id) ON DELETE CASCADE,
    day TEXT NOT NULL,
    length INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    PRIMARY KEY (room, day)
  ) WITHOUT ROWID;

  -- The scheduled run: the slot (local time) of the last one started, so a missed one runs at start.
  CREATE TABLE archive_schedule (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_slot_ts INTEGER NOT NULL,
    last_job_id INTEGER
  );
`;

/**
 * Migration 8: the identity of each archive folder's archive.json (its server and creation time).
 * A folder found under a new path with nothing recorded there is recognised as moved; a folder
 * whose archive.json differs from the one recorded at its path, as another archive put there.
 */
export const ARCHIVE_FOLDERS_SCHEMA = `
  CREATE TABLE archive_folders (
    out_dir TEXT PRIMARY KEY,
    server_name TEXT NOT NULL,
    created_ts INTEGER NOT NULL
  );
`;
