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
`;
