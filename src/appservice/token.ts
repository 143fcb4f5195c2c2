import { createHash, timingSafeEqual } from 'node:crypto';

/**
 * Constant-time token comparison. Hashing first gives both sides the same length, so neither
 * the content nor the length of the expected token leaks through timing.
 */
export function tokensMatch(given: string | undefined, expected: string): boolean {
  if (given === undefined) return false;
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * The token from `Authorization: Bearer …`, or, only when `allowQuery` is set, the legacy
 * `access_token` query parameter (Synapse ≥ 1.84 sends the header; a token in a URL ends up in
 * proxy and access logs, so the query form is refused unless the admin opts in).
 */
export function presentedToken(authorization: string | undefined, query: unknown, allowQuery = false): string | undefined {
  const match = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
  if (match) return match[1]!.trim();
  if (!allowQuery) return undefined;
  const legacy = (query as Record<string, unknown> | undefined)?.access_token;
  return typeof legacy === 'string' ? legacy : undefined;
}

/** Whether the request carries `access_token` in its query string (whatever its value). */
export function hasQueryToken(query: unknown): boolean {
  return (query as Record<string, unknown> | undefined)?.access_token !== undefined;
}
