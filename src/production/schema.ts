/** Tables for production deployments: persisted server keys etc. (migration 6). */
export const PRODUCTION_SCHEMA = `
  SELECT 1;
`;
