import { fetchRoomState } from '../federation/room-state.ts';
import type { FederationFailure, FederationRequestOptions } from '../federation/federation-client.ts';
import { isJsonObject, senderServer, type KeyLookup } from '../federation/index.ts';
import { fail, ok, type Result } from '../util/result.ts';

/** The part of FederationClient used here; tests pass a fake. */
export interface FederationRequester {
  request<T>(destination: string, method: string, pathWithQuery: string, opts?: FederationRequestOptions): Promise<Result<T, FederationFailure>>;
}

/** A room's current state as one remote server showed it, every event verified. */
export interface RemoteRoomState {
  readonly server: string;
  /** The latest event the server knows (timestamp_to_event, dir=b, now): the state is after it. */
  readonly eventId: string;
  readonly roomVersion: string;
  /** Local users (of `ownServer`) whose membership is `join` in that state. */
  readonly localJoined: string[];
  /** Other servers with joined members: more candidates to join through. */
  readonly otherServers: string[];
  readonly stateEvents: number;
  readonly authChainEvents: number;
}

// Answers that mean the server misled us, as opposed to failing to answer.
const LIES = new Set(['E_BAD_CREATE_EVENT', 'E_ROOM_ID_MISMATCH', 'E_NO_CREATE_EVENT', 'E_MALFORMED_EVENT']);

/**
 * The auth chain of a room's current state repeats most of the state (create event, power levels,
 * join rules, members' joins). An auth-chain event byte-for-byte equal to a state event is the same
 * event: it is verified once, as part of the state, instead of twice (verification dominates the
 * CPU a rejoin spends).
 */
function withoutRepeats(fed: FederationRequester): FederationRequester {
  return {
    async request<T>(destination: string, method: string, pathWithQuery: string, opts?: FederationRequestOptions): Promise<Result<T, FederationFailure>> {
      const answer = await fed.request<T>(destination, method, pathWithQuery, opts);
      if (!answer.ok || !pathWithQuery.startsWith('/_matrix/federation/v1/state/')) return answer;
      const body = answer.value as unknown;
      if (!isJsonObject(body) || !Array.isArray(body.pdus) || !Array.isArray(body.auth_chain)) return answer;
      const inState = new Set(body.pdus.map((p) => JSON.stringify(p)));
      return ok({ ...body, auth_chain: body.auth_chain.filter((p) => !inState.has(JSON.stringify(p))) } as T);
    },
  };
}

function serverOfUser(userId: string): string | undefined {
  const s = senderServer(userId);
  return s.ok ? s.value : undefined;
}

/**
 * The room's current state from `server` (the shared verified fetch: latest event by
 * timestamp_to_event, the state at it, the event itself applied), judged strictly for acting on it:
 * an answer with any event that does not verify is a lie as a whole, not a partly usable one,
 * and the latest event must be there (it may be the very join we are looking for). Failures are
 * values naming what was wrong, so the caller can try the next server.
 */
export async function fetchRemoteRoomState(
  fed: FederationRequester,
  keys: KeyLookup,
  roomId: string,
  server: string,
  ownServer: string,
  opts: { signal?: AbortSignal; now?: number } = {},
): Promise<Result<RemoteRoomState>> {
  const got = await fetchRoomState({ client: withoutRepeats(fed), keys }, roomId, server, { kind: 'ts', ts: opts.now ?? Date.now() }, opts.signal);
  if (!got.ok) return fail(LIES.has(got.error.code) ? 'E_FORGED_STATE' : got.error.code, got.error.human, got.error.log);
  const st = got.value;
  if (st.rejected.length > 0) {
    const first = st.rejected[0]!;
    return fail('E_FORGED_STATE', `${st.rejected.length} event(s) in its answer do not verify (${first.where}: ${first.message})`);
  }
  if (st.position !== 'after') return fail('E_REMOTE', `no verified copy of the latest event itself: ${st.warnings.join(' ')}`);

  const localJoined: string[] = [];
  const otherServers = new Set<string>();
  for (const ev of st.state) {
    if (ev.type !== 'm.room.member' || !isJsonObject(ev.content) || ev.content.membership !== 'join' || typeof ev.state_key !== 'string') continue;
    // Only the user joins themself; a join "sent" by anyone else is forged (and then signed by the wrong server).
    if (ev.sender !== ev.state_key) return fail('E_FORGED_STATE', `the join of ${ev.state_key} in the state was sent by ${String(ev.sender)}`);
    const memberServer = serverOfUser(ev.state_key);
    if (memberServer === ownServer) localJoined.push(ev.state_key);
    else if (memberServer !== undefined) otherServers.add(memberServer);
  }
  otherServers.delete(server);
  return ok({
    server,
    eventId: st.eventId,
    roomVersion: st.roomVersion,
    localJoined: localJoined.sort(),
    otherServers: [...otherServers].sort(),
    stateEvents: st.counts.state.received,
    authChainEvents: st.counts.authChain.received,
  });
}
