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

/** The token from `Authorization: Bearer …`, or the legacy `access_token` query parameter. */
export function presentedToken(authorization: string | undefined, query: unknown): string | undefined {
  const match = /^Bearer\s+(.+)$/i.exec(authorization ?? '');
  if (match) return match[1]!.trim();
  const legacy = (query as Record<string, unknown> | undefined)?.access_token;
  return typeof legacy === 'string' ? legacy : undefined;
}
