/** Tables of the room history archive (migration 4). Filled in by the archive work. */
export const ARCHIVE_SCHEMA = `
  SELECT 1;
`;
