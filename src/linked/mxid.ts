/** A full user ID: @localpart:server, server possibly with a port or an IPv6 literal. */
export const MXID_PATTERN = /^@[^:\s]+:[^\s]+$/;
const MAX_MXID_LENGTH = 255;

export function isMxid(value: unknown): value is string {
  return typeof value === 'string' && value.length <= MAX_MXID_LENGTH && MXID_PATTERN.test(value);
}

/** The server part of a user ID ("example.org:8448"), or '' when it is not one. */
export function serverOf(userId: string): string {
  const colon = userId.indexOf(':');
  return colon === -1 ? '' : userId.slice(colon + 1);
}
