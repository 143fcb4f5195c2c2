import { fail, ok } from "../util/result.ts";
import type { Result } from "../util/result.ts";

// Grammar from the spec appendix "Server Name": hostname [":" port], where hostname is an
// IPv4 literal, a bracketed IPv6 literal or a DNS name (IPv4 literals match the DNS branch).
const SERVER_NAME = /^(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9.-]{1,255})(?::[0-9]{1,5})?$/;

export function isValidServerName(name: string): boolean {
  return SERVER_NAME.test(name);
}

/**
 * The server part of a user id (`@localpart:server`). Historical localparts allow more
 * characters than today's grammar but never `:`, so the first colon is the separator.
 */
export function senderServer(userId: string): Result<string> {
  return serverPart(userId, "@", "user id");
}

/** The server part of a room version 1–2 event id (`$opaque:server`). */
export function eventIdServer(eventId: string): Result<string> {
  return serverPart(eventId, "$", "event id");
}

function serverPart(id: string, sigil: string, what: string): Result<string> {
  const colon = id.indexOf(":");
  const server = id.slice(colon + 1);
  if (!id.startsWith(sigil) || colon < 2 || !isValidServerName(server)) {
    return fail("E_BAD_IDENTIFIER", `Not a valid ${what}.`, `not a valid ${what}: ${JSON.stringify(id.slice(0, 300))}`);
  }
  return ok(server);
}
