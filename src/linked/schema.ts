/** Tables of the linked-accounts capability (migration index 2: user_version 2 → 3). */
export const LINKED_SCHEMA = `
  -- Links an admin made with !link: one row per pair (user_a < user_b); a person's local group is
  -- the connected component.
  CREATE TABLE linked_local_links (
    user_a TEXT NOT NULL,
    user_b TEXT NOT NULL,
    created_by TEXT,
    created_ts INTEGER NOT NULL,
    PRIMARY KEY (user_a, user_b),
    CHECK (user_a < user_b)
  );
  CREATE INDEX linked_local_links_b ON linked_local_links (user_b);

  -- The last answer of the directory that named linked accounts, per Matrix ID (without the ID
  -- itself). Read for !links and to find whose receipts to catch up at start-up; mirroring uses
  -- it only while fresh (cache_seconds).
  CREATE TABLE linked_directory_answers (
    user_id TEXT PRIMARY KEY,
    members TEXT NOT NULL,
    fetched_ts INTEGER NOT NULL
  );

  -- Read receipts of linked users seen in transactions or sent by Steward, one row per event (not
  -- just the newest): a receipt is never mirrored onto an account that has had one at that event,
  -- since the homeserver would ignore it (receipts only move forward). sent_by_steward marks the
  -- ones Steward sent, so their echo is recognised. thread_key: '' unthreaded, '?' not known.
  -- Rows older than a week are pruned.
  CREATE TABLE linked_receipts (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    event_id TEXT NOT NULL,
    thread_key TEXT NOT NULL,
    ts INTEGER NOT NULL,
    sent_by_steward INTEGER NOT NULL DEFAULT 0,
    noted_ts INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, event_id, thread_key)
  );
  CREATE INDEX linked_receipts_noted ON linked_receipts (noted_ts);

  -- Invites to mirror as a local user once that user's join arrives (the inviter was remote or not
  -- allowed to invite, or the user created the room).
  CREATE TABLE linked_pending_invites (
    room_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_ts INTEGER NOT NULL,
    PRIMARY KEY (room_id, user_id)
  );

  -- Every mirror action, newest last; !links activity reads the tail. Pruned to a bounded size.
  CREATE TABLE linked_activity (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts INTEGER NOT NULL,
    action TEXT NOT NULL,
    outcome TEXT NOT NULL,
    room_id TEXT,
    target TEXT,
    source TEXT,
    detail TEXT
  );

  -- Counters shown by !links status (directory lookups and errors, mirrored receipts…).
  CREATE TABLE linked_counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
  );
`;
