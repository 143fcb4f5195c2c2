/** Tables of the lost-room recovery capability (migration 2). */
export const RECOVERY_SCHEMA = `
  -- filled in by the recovery capability
  SELECT 1;
`;
