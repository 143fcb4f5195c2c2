/** Tables of the linked-accounts capability (migration 3). */
export const LINKED_SCHEMA = `
  -- filled in by the linked-accounts capability
  SELECT 1;
`;
