import { randomBytes } from 'node:crypto';
import { computeEventId, hashAndSignEvent, isJsonObject, roomVersion, type JsonObject, type SigningKey } from '../federation/index.ts';
import { fail, ok, type Result } from '../util/result.ts';
import type { FederationRequester } from './remote-state.ts';

/**
 * Makes a local user leave a room in a remote server's view, as our server: make_leave on that
 * server, the template checked, filled in, hashed and signed with our key, then send_leave.
 * For users the restored homeserver cannot act for (deactivated, gone) but whom the rest of the
 * federation still counts as joined; our server does not need to be in the room.
 */
export async function leaveOverFederation(
  client: FederationRequester,
  signingKey: SigningKey,
  ownServer: string,
  remote: string,
  roomId: string,
  userId: string,
  opts: { signal?: AbortSignal; now?: () => number } = {},
): Promise<Result<{ eventId: string }>> {
  const enc = encodeURIComponent;
  const made = await client.request<unknown>(remote, 'GET', `/_matrix/federation/v1/make_leave/${enc(roomId)}/${enc(userId)}`, { signal: opts.signal });
  if (!made.ok) return fail(made.error.code, `${remote} refused make_leave: ${made.error.human}`, made.error.log);
  const answer = made.value;
  const template = isJsonObject(answer) ? answer['event'] : undefined;
  if (!isJsonObject(template)) return fail('E_BAD_RESPONSE', `${remote} answered make_leave without an event template.`);
  const versionId = isJsonObject(answer) && typeof answer['room_version'] === 'string' ? answer['room_version'] : '1';
  const version = roomVersion(versionId);
  if (!version.ok) return version;
  // Sign only what we asked for: this user's own leave in this room.
  const content = template['content'];
  if (template['type'] !== 'm.room.member' || template['state_key'] !== userId || template['sender'] !== userId
    || template['room_id'] !== roomId || !isJsonObject(content) || content['membership'] !== 'leave') {
    return fail('E_BAD_TEMPLATE', `${remote} answered make_leave with a template that is not ${userId}'s leave of ${roomId}; nothing was signed.`);
  }
  const event: JsonObject = { ...template };
  delete event['signatures'];
  delete event['hashes'];
  delete event['unsigned'];
  delete event['event_id'];
  event['origin'] = ownServer;
  event['origin_server_ts'] = (opts.now ?? Date.now)();
  if (version.value.eventIdFormat === 'server-generated') event['event_id'] = `$${randomBytes(12).toString('base64url')}:${ownServer}`;
  const signed = hashAndSignEvent(event, version.value, ownServer, signingKey);
  let eventId: string;
  if (version.value.eventIdFormat === 'server-generated') {
    eventId = event['event_id'] as string;
  } else {
    const id = computeEventId(signed, version.value);
    if (!id.ok) return id;
    eventId = id.value;
  }
  const sent = await client.request<unknown>(remote, 'PUT', `/_matrix/federation/v2/send_leave/${enc(roomId)}/${enc(eventId)}`, { body: signed, signal: opts.signal });
  if (!sent.ok) return fail(sent.error.code, `${remote} refused send_leave: ${sent.error.human}`, sent.error.log);
  return ok({ eventId });
}
