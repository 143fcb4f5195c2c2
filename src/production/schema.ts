/** Tables for production deployments (migration 6). */
export const PRODUCTION_SCHEMA = `
  -- prod-ops: server keys fetched over federation, verified before they are stored, so a room whose
  -- origin server is down can still be verified after a restart (src/federation/persisted-keys.ts).
  -- valid_until_ts is the limit the memory cache uses: valid_until_ts capped at fetch + 7 days for a
  -- current key, expired_ts for an old one.
  CREATE TABLE federation_server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    valid_until_ts INTEGER NOT NULL,
    old INTEGER NOT NULL CHECK (old IN (0, 1)),
    fetched_ts INTEGER NOT NULL,
    PRIMARY KEY (server_name, key_id)
  );
  -- end prod-ops
`;
