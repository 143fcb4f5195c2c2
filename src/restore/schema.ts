/** Tables of restore from dumps (migration 5). Filled in by the restore work. */
export const RESTORE_SCHEMA = `
  SELECT 1;
`;
