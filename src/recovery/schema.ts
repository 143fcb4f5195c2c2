/** Tables of the lost-room recovery capability (migration 2). */
export const RECOVERY_SCHEMA = `
  -- Rooms this server is no longer in while other servers still send it events for them.
  -- state: lost (to recover), recovered (a rejoin succeeded), forgotten (the admin said ignore it).
  CREATE TABLE lost_rooms (
    room_id TEXT PRIMARY KEY,
    state TEXT NOT NULL DEFAULT 'lost' CHECK (state IN ('lost', 'recovered', 'forgotten')),
    first_seen_ts INTEGER NOT NULL,
    last_seen_ts INTEGER NOT NULL,
    sightings INTEGER NOT NULL DEFAULT 0,
    -- who added it by hand (!lost add), when it was not seen in a log
    added_by TEXT,
    -- set once the status room was told; cleared when the room is lost again
    announced_ts INTEGER,
    recovered_ts INTEGER,
    recovered_by_job INTEGER,
    state_changed_ts INTEGER NOT NULL
  );
  CREATE INDEX lost_rooms_state ON lost_rooms (state, announced_ts);

  -- The servers seen sending for a lost room (or named by an admin): where to ask for its state.
  CREATE TABLE lost_room_servers (
    room_id TEXT NOT NULL REFERENCES lost_rooms (room_id) ON DELETE CASCADE,
    server_name TEXT NOT NULL,
    first_seen_ts INTEGER NOT NULL,
    last_seen_ts INTEGER NOT NULL,
    sightings INTEGER NOT NULL DEFAULT 0,
    manual INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, server_name)
  );

  -- Where each followed log file was left, and how its reading goes (shown by !lost list).
  CREATE TABLE log_sources (
    source TEXT PRIMARY KEY,
    file_id TEXT,
    offset INTEGER,
    status TEXT NOT NULL DEFAULT 'starting',
    detail TEXT,
    lines INTEGER NOT NULL DEFAULT 0,
    unparsed INTEGER NOT NULL DEFAULT 0,
    sightings INTEGER NOT NULL DEFAULT 0,
    updated_ts INTEGER NOT NULL
  );

  -- Per-room outcome of a rejoin job: a resumed job skips rooms already here.
  CREATE TABLE rejoin_results (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    room_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    result TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (job_id, room_id)
  );
`;
