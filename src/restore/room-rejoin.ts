import type { ClientApi } from '../homeserver/client-api.ts';
import { path, type HomeserverHttp } from '../homeserver/http.ts';
import type { KeyLookup } from '../federation/index.ts';
import { candidateServers } from '../recovery/rejoin.ts';
import { fetchRemoteRoomState, type FederationRequester, type RemoteRoomState } from '../recovery/remote-state.ts';
import { failure, ok, type Result } from '../util/result.ts';
import type { RejoinPlan } from './room-plan.ts';
import type { RestoredRoomStore } from './room-store.ts';

export interface RejoinDeps {
  readonly http: HomeserverHttp;
  readonly client: ClientApi;
  readonly store: RestoredRoomStore;
  readonly serverName: string;
  federation(): Promise<Result<{ readonly client: FederationRequester; readonly keys: KeyLookup }>>;
  userUsable(userId: string): Promise<boolean>;
}

export interface RejoinOutcome {
  readonly stateFrom: string;
  readonly rejoined: readonly string[];
  readonly alreadyJoined: readonly string[];
  readonly notes: readonly string[];
  readonly alreadyDone: boolean;
}

/**
 * A room other servers are still in: learn its current state from them (every event verified, the
 * recovery code's fetch), join our users that state shows joined (as themselves, through those
 * servers), and point our aliases and directory listing at it again. The room keeps its id.
 */
export async function rejoinRoom(plan: RejoinPlan, deps: RejoinDeps, signal: AbortSignal): Promise<Result<RejoinOutcome>> {
  const notes: string[] = [];
  const fed = await deps.federation();
  if (!fed.ok) return fed;
  const roomId = plan.roomId;
  const tried: string[] = [];
  let state: RemoteRoomState | undefined;
  for (const server of candidateServers(roomId, plan.via, [], deps.serverName)) {
    if (signal.aborted) break;
    const got = await fetchRemoteRoomState(fed.value.client, fed.value.keys, roomId, server, deps.serverName, { signal });
    if (got.ok) {
      state = got.value;
      break;
    }
    tried.push(`${server} (${got.error.human})`);
  }
  if (!state) return { ok: false, error: failure('E_NO_REMOTE_STATE', `no server answered with room state that verifies (${tried.join('; ') || 'none to ask'}); nobody was joined`) };
  const via = [state.server, ...plan.via.filter((s) => s !== state.server), ...state.otherServers].filter((s, i, all) => all.indexOf(s) === i).slice(0, 5);

  const members = await deps.http.request<{ members?: unknown }>('GET', path`/_synapse/admin/v1/rooms/${roomId}/members`, { signal });
  const known = new Set(members.ok && Array.isArray(members.value.members) ? members.value.members.filter((m): m is string => typeof m === 'string') : []);
  const rejoined: string[] = [];
  const alreadyJoined: string[] = [];
  for (const user of state.localJoined) {
    if (signal.aborted) break;
    if (known.has(user)) {
      alreadyJoined.push(user);
      continue;
    }
    if (!(await deps.userUsable(user))) {
      notes.push(`${user} does not exist here now: not joined`);
      continue;
    }
    const joined = await deps.client.join(roomId, via, user);
    if (joined.ok) rejoined.push(user);
    else notes.push(`${user} not joined: ${joined.error.human}`);
  }
  for (const user of plan.localMembers) if (!state.localJoined.includes(user)) notes.push(`${user} is no longer joined in ${state.server}'s state: not joined`);
  const inRoom = [...alreadyJoined, ...rejoined];
  const first = inRoom[0];
  if (first) {
    for (const alias of plan.aliases) {
      const put = await deps.http.request('PUT', path`/_matrix/client/v3/directory/room/${alias}`, { body: { room_id: roomId }, asUser: first, signal });
      if (put.ok) continue;
      const now = put.error.status === 409 ? await deps.client.resolveAlias(alias) : undefined;
      if (now?.ok && now.value.room_id === roomId) continue;
      notes.push(`alias ${alias} ${put.error.status === 409 ? `is taken${now?.ok ? ` (it points to ${now.value.room_id})` : ''}: left as it is` : `could not be set: ${put.error.human}`}`);
    }
    if (plan.published) {
      const listed = await deps.http.request('PUT', path`/_matrix/client/v3/directory/list/room/${roomId}`, { body: { visibility: 'public' }, asUser: first, signal });
      if (!listed.ok) notes.push(`not listed in the room directory again: ${listed.error.human}`);
    }
  }
  const failedUsers = state.localJoined.length - inRoom.length;
  if (!signal.aborted && (failedUsers === 0 || inRoom.length > 0)) {
    deps.store.set({ oldRoomId: roomId, kind: 'rejoin', newRoomId: roomId, phase: failedUsers === 0 ? 'finished' : 'rejoining', actingUser: first ?? null });
  }
  return ok({ stateFrom: state.server, rejoined: rejoined.sort(), alreadyJoined: alreadyJoined.sort(), notes, alreadyDone: rejoined.length === 0 && alreadyJoined.length > 0 && notes.length === 0 });
}
