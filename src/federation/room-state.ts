import { roomIdOfCreateEvent } from './event-hashes.ts';
import { verifyEvent, type KeyLookup } from './event-verify.ts';
import type { FederationClient, FederationFailure } from './federation-client.ts';
import { isJsonObject, type JsonObject } from './json-object.ts';
import { roomVersion } from './room-versions.ts';
import { forEachConcurrent } from '../util/pool.ts';
import { fail, failure, ok, type Failure, type Result } from '../util/result.ts';

/** What fetching a room's state needs: signed requests and server keys. */
export interface RoomStateDeps {
  readonly client: Pick<FederationClient, 'request'>;
  readonly keys: KeyLookup;
}

/**
 * Where in the room's history: state at an event (the spec's meaning: before it, what it was
 * authorised against), or the state as of a moment (after the last event at or before it).
 */
export type StatePoint = { readonly kind: 'event'; readonly eventId: string } | { readonly kind: 'ts'; readonly ts: number };

export interface RejectedEvent {
  /** The id the answer claimed (or computed), when there was one. */
  readonly eventId: string | null;
  readonly type: string | null;
  readonly stateKey: string | null;
  readonly where: 'state' | 'auth_chain' | 'event';
  readonly code: string;
  readonly message: string;
}

export interface PartCounts {
  received: number;
  verified: number;
  /** Verified, but the content hash did not match: only the redacted copy is kept. */
  redacted: number;
  failed: number;
}

export interface FetchedRoomState {
  readonly roomId: string;
  readonly roomVersion: string;
  readonly server: string;
  /** The event the state was asked at. */
  readonly eventId: string;
  /** 'before': the state the event was authorised against; 'after': with the event applied (timestamps). */
  readonly position: 'before' | 'after';
  /** origin_server_ts of the event, as the server answered it (timestamp_to_event or the event itself). */
  readonly eventTs: number | null;
  /** Verified state events, one per (type, state_key), sorted by type then state key. */
  readonly state: readonly JsonObject[];
  readonly stateIds: readonly string[];
  /** Verified auth chain events, in the order received. */
  readonly authChain: readonly JsonObject[];
  readonly counts: { readonly state: PartCounts; readonly authChain: PartCounts };
  readonly rejected: readonly RejectedEvent[];
  /** Things the admin should know that did not stop the answer. */
  readonly warnings: readonly string[];
}

const VERIFY_CONCURRENCY = 16;
const enc = encodeURIComponent;

/**
 * The room's state as `server` sees it, every event checked (content hash, signatures, event
 * id, room id); events that fail are dropped and counted, never trusted.
 */
export async function fetchRoomState(
  deps: RoomStateDeps,
  roomId: string,
  server: string,
  point: StatePoint,
  signal?: AbortSignal,
): Promise<Result<FetchedRoomState>> {
  const warnings: string[] = [];
  const opts = signal ? { signal } : {};
  let eventId: string;
  let eventTs: number | null = null;
  if (point.kind === 'event') {
    eventId = point.eventId;
  } else {
    const found = await deps.client.request<unknown>(server, 'GET', `/_matrix/federation/v1/timestamp_to_event/${enc(roomId)}?dir=b&ts=${point.ts}`, opts);
    if (!found.ok) return { ok: false, error: explain(found.error, roomId, 'timestamp_to_event') };
    const answer = found.value;
    if (!isJsonObject(answer) || typeof answer['event_id'] !== 'string' || !answer['event_id'].startsWith('$')) {
      return fail('E_BAD_RESPONSE', `${server} answered timestamp_to_event without an event id.`);
    }
    eventId = answer['event_id'];
    eventTs = typeof answer['origin_server_ts'] === 'number' ? answer['origin_server_ts'] : null;
  }

  const fetched = await deps.client.request<unknown>(server, 'GET', `/_matrix/federation/v1/state/${enc(roomId)}?event_id=${enc(eventId)}`, opts);
  if (!fetched.ok) return { ok: false, error: explain(fetched.error, roomId, 'state', eventId) };
  const body = fetched.value;
  if (!isJsonObject(body) || !Array.isArray(body['pdus']) || !Array.isArray(body['auth_chain'])) {
    return fail('E_BAD_RESPONSE', `${server} answered /state without pdus and auth_chain lists.`);
  }
  const pdus = body['pdus'] as unknown[];
  const authChainPdus = body['auth_chain'] as unknown[];

  // The room version comes from the create event, which must itself check out under it.
  const createPdu = [...pdus, ...authChainPdus].find((p) => isJsonObject(p) && p['type'] === 'm.room.create' && p['state_key'] === '');
  if (!isJsonObject(createPdu)) return fail('E_NO_CREATE_EVENT', `${server}'s answer has no m.room.create event: the room version is unknown, nothing can be verified.`);
  const createContent = isJsonObject(createPdu['content']) ? createPdu['content'] : {};
  const versionId = createContent['room_version'] === undefined ? '1' : createContent['room_version'];
  if (typeof versionId !== 'string') return fail('E_MALFORMED_EVENT', 'The create event\'s room_version is not a string.');
  const version = roomVersion(versionId);
  if (!version.ok) return version;
  const create = await verifyEvent(createPdu, versionId, deps.keys);
  if (!create.ok) {
    return fail('E_BAD_CREATE_EVENT', `The room's create event from ${server} does not verify (${create.error.code}: ${create.error.human}); nothing in the answer can be trusted.`, create.error.log);
  }
  const createdRoom = roomIdOfCreateEvent(create.value.event, version.value);
  if (!createdRoom.ok) return createdRoom;
  if (createdRoom.value !== roomId) {
    return fail('E_ROOM_ID_MISMATCH', `${server} answered with the create event of ${createdRoom.value}, not of ${roomId}.`);
  }

  const rejected: RejectedEvent[] = [];
  const check = async (pdu: unknown, where: RejectedEvent['where'], expectedId?: string): Promise<{ event: JsonObject; eventId: string; redacted: boolean } | null> => {
    const reject = (f: Failure): null => {
      rejected.push({ ...describePdu(pdu, expectedId), where, code: f.code, message: f.human });
      return null;
    };
    const verified = await verifyEvent(pdu, versionId, deps.keys, expectedId);
    if (!verified.ok) return reject(verified.error);
    const { event } = verified.value;
    const isV12Create = version.value.roomIdIsCreateEventHash && event['type'] === 'm.room.create' && event['state_key'] === '';
    if (!isV12Create && event['room_id'] !== roomId) return reject(failure('E_WRONG_ROOM', `Event ${verified.value.eventId} belongs to another room (${String(event['room_id'])}).`));
    if (where === 'state' && typeof event['state_key'] !== 'string') return reject(failure('E_NOT_STATE', `Event ${verified.value.eventId} has no state_key but was listed as state.`));
    return { event: withEventId(event, verified.value.eventId), eventId: verified.value.eventId, redacted: verified.value.redacted };
  };

  const counts = { state: emptyCounts(pdus.length), authChain: emptyCounts(authChainPdus.length) };
  const state = new Map<string, { event: JsonObject; eventId: string }>();
  const verifiedState: Array<{ index: number; event: JsonObject; eventId: string }> = [];
  await forEachConcurrent(pdus.entries(), VERIFY_CONCURRENCY, async ([index, pdu]) => {
    const ev = await check(pdu, 'state');
    tally(counts.state, ev);
    if (ev) verifiedState.push({ index, ...ev });
  }, signal);
  verifiedState.sort((a, b) => a.index - b.index);
  for (const ev of verifiedState) {
    const key = stateKey(ev.event);
    const before = state.get(key);
    if (before && before.eventId !== ev.eventId) warnings.push(`Two state events for ${ev.event['type']} "${ev.event['state_key']}": ${before.eventId} and ${ev.eventId}; kept the latter.`);
    state.set(key, ev);
  }

  const authChain: Array<{ index: number; event: JsonObject }> = [];
  await forEachConcurrent(authChainPdus.entries(), VERIFY_CONCURRENCY, async ([index, pdu]) => {
    const ev = await check(pdu, 'auth_chain');
    tally(counts.authChain, ev);
    if (ev) authChain.push({ index, event: ev.event });
  }, signal);
  authChain.sort((a, b) => a.index - b.index);
  if (signal?.aborted) return fail('E_CANCELLED', 'Cancelled.');

  let position: 'before' | 'after' = 'before';
  if (point.kind === 'ts') {
    // The state as of the moment includes the last event itself.
    const single = await deps.client.request<unknown>(server, 'GET', `/_matrix/federation/v1/event/${enc(eventId)}`, opts);
    const pdu = single.ok && isJsonObject(single.value) && Array.isArray(single.value['pdus']) ? single.value['pdus'][0] : undefined;
    if (!single.ok) {
      warnings.push(`Could not fetch ${eventId} itself (${single.error.human}): the state shown is the state before it.`);
    } else if (pdu === undefined) {
      warnings.push(`${server} answered /event/${eventId} without the event: the state shown is the state before it.`);
    } else {
      const ev = await check(pdu, 'event', version.value.eventIdFormat === 'server-generated' ? undefined : eventId);
      if (ev === null) {
        warnings.push(`${eventId} itself did not verify: the state shown is the state before it.`);
      } else if (ev.eventId !== eventId) {
        rejected.push({ ...describePdu(pdu, eventId), where: 'event', code: 'E_EVENT_ID_MISMATCH', message: `Asked for ${eventId}, got ${ev.eventId}.` });
        warnings.push(`${server} answered /event/${eventId} with another event: the state shown is the state before it.`);
      } else {
        position = 'after';
        if (typeof ev.event['origin_server_ts'] === 'number') eventTs = ev.event['origin_server_ts'];
        if (typeof ev.event['state_key'] === 'string') state.set(stateKey(ev.event), ev);
      }
    }
  }

  const sorted = [...state.values()].sort((a, b) => compareState(a.event, b.event));
  return ok({
    roomId,
    roomVersion: versionId,
    server,
    eventId,
    position,
    eventTs,
    state: sorted.map((s) => s.event),
    stateIds: sorted.map((s) => s.eventId),
    authChain: authChain.map((a) => a.event),
    counts,
    rejected,
    warnings,
  });
}

function emptyCounts(received: number): PartCounts {
  return { received, verified: 0, redacted: 0, failed: 0 };
}

function tally(counts: PartCounts, ev: { redacted: boolean } | null): void {
  if (ev === null) counts.failed++;
  else {
    counts.verified++;
    if (ev.redacted) counts.redacted++;
  }
}

function stateKey(event: JsonObject): string {
  return `${String(event['type'])}\u0000${String(event['state_key'])}`;
}

function compareState(a: JsonObject, b: JsonObject): number {
  const ka = stateKey(a);
  const kb = stateKey(b);
  return ka < kb ? -1 : ka > kb ? 1 : 0;
}

/** Room versions 3+ carry no event_id on the wire; the file keeps the verified id beside each event. */
function withEventId(event: JsonObject, eventId: string): JsonObject {
  return event['event_id'] === eventId ? event : { event_id: eventId, ...event };
}

function describePdu(pdu: unknown, expectedId: string | undefined): Pick<RejectedEvent, 'eventId' | 'type' | 'stateKey'> {
  const o = isJsonObject(pdu) ? pdu : {};
  const claimed = typeof o['event_id'] === 'string' ? o['event_id'] : expectedId ?? null;
  return {
    eventId: claimed === null ? null : claimed.slice(0, 300),
    type: typeof o['type'] === 'string' ? o['type'].slice(0, 200) : null,
    stateKey: typeof o['state_key'] === 'string' ? o['state_key'].slice(0, 300) : null,
  };
}

/** Federation failures with what an admin can do about the usual ones. */
function explain(error: FederationFailure, roomId: string, what: 'state' | 'timestamp_to_event', eventId?: string): Failure {
  let hint = '';
  if (error.status === 403) hint = ` ${error.destination} shows a room's state only to servers in the room: is one of our users joined to ${roomId}?`;
  else if (error.errcode === 'M_UNRECOGNIZED' && what === 'timestamp_to_event') hint = ` ${error.destination} does not support timestamp_to_event: give --at EVENT instead.`;
  else if (error.status === 404 && what === 'timestamp_to_event') hint = ` ${error.destination} knows no event of ${roomId} at or before that time (is it in the room?).`;
  else if (error.status === 404 && eventId !== undefined) hint = ` ${error.destination} does not know ${eventId} in ${roomId}, or has no state for it.`;
  return { ...error, human: `${error.human}${hint}` };
}
