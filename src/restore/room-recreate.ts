import { isJsonObject } from '../federation/json-object.ts';
import type { ClientApi } from '../homeserver/client-api.ts';
import { path, type HomeserverHttp } from '../homeserver/http.ts';
import { failure, ok, type Result } from '../util/result.ts';
import type { DumpStateEvent } from './room-dump-reader.ts';
import { importHistory, type HistoryOutcome } from './room-history.ts';
import { powerLevelsFor, type RecreatePlan } from './room-plan.ts';
import type { RestoredRoom, RestoredRoomStore, RoomPhase, RoomStep, StepOutcome } from './room-store.ts';

/** Marks the create event of a recreated room with the room it stands for: a resumed restore finds it. */
export const RESTORED_FROM_KEY = 'org.steward.restored_from';

export interface RecreateDeps {
  readonly http: HomeserverHttp;
  readonly client: ClientApi;
  readonly store: RestoredRoomStore;
  readonly botUserId: string;
  /** Room versions the homeserver can create now, and its default. */
  readonly roomVersions: { readonly available: ReadonlySet<string>; readonly default: string | null };
  /** Whether a local user exists and may act (not deactivated, not locked); memoised by the caller. */
  userUsable(userId: string): Promise<boolean>;
}

export interface RecreateOutcome {
  readonly newRoomId: string;
  readonly actingUser: string;
  readonly alreadyDone: boolean;
  readonly stateEvents: number;
  readonly joined: readonly string[];
  readonly notes: readonly string[];
  readonly history: HistoryOutcome | null;
  /** The steps run this time that can fail without stopping the room, with what they came to. */
  readonly steps: readonly StepOutcome[];
  /** The room was finished before: only steps that had failed were run again. */
  readonly retried: boolean;
}

const PHASES: readonly RoomPhase[] = ['creating', 'created', 'aliases', 'members', 'history', 'finished'];
const reached = (phase: RoomPhase | undefined, want: RoomPhase): boolean => phase !== undefined && PHASES.indexOf(phase) >= PHASES.indexOf(want);

/** Join rules may name other rooms (restricted joins): point those that were recreated at their new rooms. */
function remapState(ev: DumpStateEvent, newRoomFor: (old: string) => string | undefined): DumpStateEvent {
  if (ev.type !== 'm.room.join_rules' || !Array.isArray(ev.content.allow)) return ev;
  const allow = ev.content.allow.map((a: unknown) => (isJsonObject(a) && typeof a.room_id === 'string' ? { ...a, room_id: newRoomFor(a.room_id) ?? a.room_id } : a));
  return { ...ev, content: { ...ev.content, allow } };
}

/**
 * Recreates a room only our server was in, phase by phase (each recorded before the next starts,
 * so a re-run or resume does none twice): create it as the acting user with the dumped state and
 * levels that let the restore work; move the aliases, the canonical alias and the directory
 * listing; bring the members back (invite, then join as themselves); re-post the archived history;
 * then turn on encryption and set the dumped power levels.
 */
export async function recreateRoom(
  plan: RecreatePlan,
  archive: { readonly roomDir: string; readonly importable: number; readonly encrypted: number } | null,
  deps: RecreateDeps,
  signal: AbortSignal,
): Promise<Result<RecreateOutcome>> {
  const notes: string[] = [];
  let rec: RestoredRoom | undefined = deps.store.get(plan.roomId);
  if (rec?.phase === 'finished' && rec.newRoomId) return retryFailedSteps(plan, rec.newRoomId, rec.actingUser ?? '', deps, signal);
  let acting = rec?.actingUser ?? undefined;
  if (!acting) {
    for (const candidate of plan.creatorCandidates) {
      if (await deps.userUsable(candidate)) {
        acting = candidate;
        break;
      }
    }
  }
  if (!acting) return { ok: false, error: failure('E_NO_MEMBER', `none of its members (${plan.joined.join(', ')}) exists on this server now: restore users first`) };
  if (acting !== plan.creatorCandidates[0]) notes.push(`created by ${acting} (the original creator ${plan.creatorCandidates[0]} does not exist here now)`);
  const version = plan.roomVersion && deps.roomVersions.available.has(plan.roomVersion) ? plan.roomVersion : undefined;
  if (plan.roomVersion && !version) notes.push(`room version ${plan.roomVersion} is not available here; created with the server's default ${deps.roomVersions.default ?? ''}`.trim());
  const effectiveVersion = version ?? deps.roomVersions.default;
  const creators = [acting, ...(Array.isArray(plan.createContent.additional_creators) ? plan.createContent.additional_creators.filter((c): c is string => typeof c === 'string') : [])];
  const save = (phase: RoomPhase, newRoomId: string | null): void => {
    rec = { oldRoomId: plan.roomId, kind: 'recreate', newRoomId, phase, actingUser: acting! };
    deps.store.set(rec);
  };
  const opts = { signal };
  const initialState = plan.initialState.map((e) => remapState(e, (old) => deps.store.newRoomFor(old)));
  if (!initialState.some((e) => e.type === 'm.room.guest_access')) {
    // No guest_access event means "forbidden"; the preset would otherwise allow guests.
    initialState.push({ type: 'm.room.guest_access', state_key: '', content: { guest_access: 'forbidden' } });
  }

  // 1. The room itself.
  let newRoomId = rec?.newRoomId ?? null;
  if (!newRoomId) {
    if (rec?.phase === 'creating') newRoomId = await findCreated(plan.roomId, acting, deps);
    if (!newRoomId) {
      save('creating', null);
      const body: Record<string, unknown> = {
        preset: 'private_chat',
        visibility: 'private',
        creation_content: { ...plan.createContent, [RESTORED_FROM_KEY]: plan.roomId },
        initial_state: initialState.map((e) => ({ type: e.type, state_key: e.state_key, content: e.content })),
        power_level_content_override: powerLevelsFor(plan.powerLevels, { final: false, version: effectiveVersion, creators, acting, ...(archive ? { bot: deps.botUserId } : {}) }),
      };
      if (version) body.room_version = version;
      const created = await deps.client.createRoom(body, acting);
      if (!created.ok) return { ok: false, error: failure(created.error.code, `creating the new room as ${acting} failed: ${created.error.human}`, created.error.log) };
      newRoomId = created.value.room_id;
    }
    save('created', newRoomId);
  }
  const room = newRoomId;

  // 2. Aliases and canonical alias; 3. the directory listing. Each step's outcome is recorded: a
  // re-run of the finished room retries the ones that failed.
  const steps: StepOutcome[] = [];
  const step = (name: RoomStep, problems: readonly string[]): void => {
    deps.store.setStep(plan.roomId, name, problems);
    steps.push({ step: name, outcome: problems.length > 0 ? 'failed' : 'done', problems });
    notes.push(...problems);
  };
  if (!reached(rec?.phase, 'aliases')) {
    step('aliases', await aliasesStep(plan, room, acting, deps, signal));
    if (plan.published) step('directory', await directoryStep(room, acting, deps, signal));
    save('aliases', room);
  }

  // 4. Members: invited by the acting user, then joined as themselves.
  const joined: string[] = [];
  const canPost = new Set<string>([acting]);
  if (!reached(rec?.phase, 'members')) {
    const members = await membersStep(plan, room, acting, archive !== null, deps, signal);
    if (!members.ok) return members;
    step('members', members.value.problems);
    save('members', room);
    for (const [user, membership] of members.value.before) if (membership === 'join' && user !== deps.botUserId) canPost.add(user);
    for (const user of members.value.joined) canPost.add(user);
    joined.push(...members.value.joined);
  } else {
    // Resumed after the members step: who is in the room now.
    const members = await memberships(deps, room, acting, signal);
    if (!members.ok) return members;
    for (const [user, membership] of members.value) if (membership === 'join' && user !== deps.botUserId) canPost.add(user);
    joined.push(...[...canPost].filter((u) => u !== acting && plan.joined.includes(u)));
  }

  // 5. History from the archive.
  let history: HistoryOutcome | null = null;
  if (archive && !reached(rec?.phase, 'history')) {
    const imported = await importHistory(plan.roomId, room, archive.roomDir, canPost, archive, { http: deps.http, store: deps.store, botUserId: deps.botUserId }, signal);
    if (!imported.ok) return imported;
    history = imported.value;
    save('history', room);
  }

  // 5b. What the members kept about the room (tags, read marker, m.direct), moved to the new room.
  const moved = await moveRoomAccountData(plan.roomId, room, [...canPost], deps, signal);
  if (moved.length > 0) notes.push(...moved);

  // 6. Encryption and the dumped power levels, last: history is re-posted in the clear, as it was archived.
  if (plan.encryption) {
    const current = await deps.client.stateEvent(room, 'm.room.encryption', '', { asUser: acting, signal });
    if (!current.ok) {
      const set = await deps.http.request('PUT', path`/_matrix/client/v3/rooms/${room}/state/m.room.encryption/`, { body: plan.encryption, asUser: acting, ...opts });
      if (!set.ok) return { ok: false, error: failure(set.error.code, `turning encryption on failed: ${set.error.human}`, set.error.log) };
    }
  }
  const finalLevels = powerLevelsFor(plan.powerLevels, { final: true, version: effectiveVersion, creators, acting });
  const levels = await deps.http.request('PUT', path`/_matrix/client/v3/rooms/${room}/state/m.room.power_levels/`, { body: finalLevels, asUser: acting, ...opts });
  if (!levels.ok) return { ok: false, error: failure(levels.error.code, `setting the dumped power levels failed: ${levels.error.human}`, levels.error.log) };
  if (archive) {
    const left = await deps.client.leave(room, undefined);
    if (!left.ok && left.error.status !== 403) notes.push(`the bot did not leave: ${left.error.human}`);
  }
  save('finished', room);
  return ok({ newRoomId: room, actingUser: acting, alreadyDone: false, stateEvents: initialState.length, joined: joined.sort(), notes, history, steps, retried: false });
}

/**
 * A room finished before: the steps that failed then (an alias taken, the directory refusing, a
 * member who did not exist yet) are run again in the room it made; nothing is created. No failed
 * step: the room is already restored and nothing is asked of the server.
 */
async function retryFailedSteps(plan: RecreatePlan, room: string, acting: string, deps: RecreateDeps, signal: AbortSignal): Promise<Result<RecreateOutcome>> {
  const failed = deps.store.failedSteps(plan.roomId);
  const steps: StepOutcome[] = [];
  const joined: string[] = [];
  for (const { step } of failed) {
    let problems: readonly string[];
    if (step === 'aliases') problems = await aliasesStep(plan, room, acting, deps, signal);
    else if (step === 'directory') problems = plan.published ? await directoryStep(room, acting, deps, signal) : [];
    else {
      const members = await membersStep(plan, room, acting, false, deps, signal);
      if (!members.ok) return members;
      problems = members.value.problems;
      joined.push(...members.value.joined.filter((u) => members.value.before.get(u) !== 'join'));
    }
    if (signal.aborted) break;
    deps.store.setStep(plan.roomId, step, problems);
    steps.push({ step, outcome: problems.length > 0 ? 'failed' : 'done', problems });
  }
  return ok({ newRoomId: room, actingUser: acting, alreadyDone: failed.length === 0, stateEvents: 0, joined: joined.sort(), notes: steps.flatMap((x) => x.problems), history: null, steps, retried: failed.length > 0 });
}

/**
 * The room's aliases on our server pointed at the new room, then the canonical alias event with
 * those it holds. Returns the problems: an alias taken by another room, a refusal.
 */
async function aliasesStep(plan: RecreatePlan, room: string, acting: string, deps: RecreateDeps, signal: AbortSignal): Promise<string[]> {
  const problems: string[] = [];
  const held: string[] = [];
  for (const alias of plan.aliases) {
    const put = await deps.http.request('PUT', path`/_matrix/client/v3/directory/room/${alias}`, { body: { room_id: room }, asUser: acting, signal });
    if (put.ok) {
      held.push(alias);
      continue;
    }
    if (put.error.status === 409) {
      const now = await deps.client.resolveAlias(alias);
      if (now.ok && now.value.room_id === room) held.push(alias);
      else problems.push(`alias ${alias} is taken${now.ok ? ` (it points to ${now.value.room_id})` : ''}: left as it is`);
    } else {
      problems.push(`alias ${alias} could not be set: ${put.error.human}`);
    }
  }
  if (plan.canonicalAlias) {
    const content: Record<string, unknown> = {};
    if (typeof plan.canonicalAlias.alias === 'string' && held.includes(plan.canonicalAlias.alias)) content.alias = plan.canonicalAlias.alias;
    const alt = Array.isArray(plan.canonicalAlias.alt_aliases) ? plan.canonicalAlias.alt_aliases.filter((a): a is string => typeof a === 'string' && held.includes(a)) : [];
    if (alt.length > 0) content.alt_aliases = alt;
    if (Object.keys(content).length > 0) {
      const current = await deps.client.stateEvent(room, 'm.room.canonical_alias', '', { asUser: acting, signal });
      const same = current.ok && current.value.alias === content.alias && JSON.stringify(current.value.alt_aliases ?? []) === JSON.stringify(content.alt_aliases ?? []);
      if (!same) {
        const set = await deps.http.request('PUT', path`/_matrix/client/v3/rooms/${room}/state/m.room.canonical_alias/`, { body: content, asUser: acting, signal });
        if (!set.ok) problems.push(`canonical alias not set: ${set.error.human}`);
      }
    }
  }
  return problems;
}

async function directoryStep(room: string, acting: string, deps: RecreateDeps, signal: AbortSignal): Promise<string[]> {
  const listed = await deps.http.request('PUT', path`/_matrix/client/v3/directory/list/room/${room}`, { body: { visibility: 'public' }, asUser: acting, signal });
  return listed.ok ? [] : [`not listed in the room directory: ${listed.error.human}`];
}

/**
 * The dump's members brought back: joined ones invited by the acting user and joined as
 * themselves (and the bot, when it is to post history), invited ones invited again, banned ones
 * banned again. Whoever already is where they should be is left alone, so a retry only does
 * what is missing. Returns who joined, the memberships found first, and the problems.
 */
async function membersStep(plan: RecreatePlan, room: string, acting: string, withBot: boolean, deps: RecreateDeps, signal: AbortSignal): Promise<Result<{ joined: string[]; before: Map<string, string>; problems: string[] }>> {
  const members = await memberships(deps, room, acting, signal);
  if (!members.ok) return members;
  const m = members.value;
  const problems: string[] = [];
  const joined: string[] = [];
  const join = async (user: string, asUser: string | undefined): Promise<boolean> => {
    if (m.get(user) === 'join') return true;
    if (m.get(user) !== 'invite') {
      const invited = await deps.client.invite(room, user, acting);
      if (!invited.ok) {
        problems.push(`${user} not invited: ${invited.error.human}`);
        return false;
      }
    }
    const j = await deps.client.join(room, [], asUser);
    if (!j.ok) problems.push(`${user} not joined: ${j.error.human}`);
    return j.ok;
  };
  for (const user of plan.joined) {
    if (user === acting) continue;
    if (!(await deps.userUsable(user))) {
      problems.push(`${user} does not exist here now: not joined`);
      continue;
    }
    if (await join(user, user)) joined.push(user);
  }
  if (withBot) await join(deps.botUserId, undefined);
  for (const user of plan.invited) {
    if (m.has(user)) continue;
    const invited = await deps.client.invite(room, user, acting);
    if (!invited.ok) problems.push(`${user} not invited again: ${invited.error.human}`);
  }
  for (const user of plan.banned) {
    if (m.get(user) === 'ban') continue;
    const banned = await deps.http.request('POST', path`/_matrix/client/v3/rooms/${room}/ban`, { body: { user_id: user, reason: 'banned in the room this one restores' }, asUser: acting, idempotent: true, signal });
    if (!banned.ok) problems.push(`${user} not banned again: ${banned.error.human}`);
  }
  return ok({ joined, before: m, problems });
}

/** Memberships in the new room as the acting user sees them. */
async function memberships(deps: RecreateDeps, room: string, acting: string, signal: AbortSignal): Promise<Result<Map<string, string>>> {
  const state = await deps.client.roomState(room, { asUser: acting, signal });
  if (!state.ok) return { ok: false, error: failure(state.error.code, `cannot read the new room's members: ${state.error.human}`, state.error.log) };
  const out = new Map<string, string>();
  for (const ev of state.value) {
    if (ev.type === 'm.room.member' && typeof ev.state_key === 'string' && isJsonObject(ev.content) && typeof ev.content.membership === 'string') out.set(ev.state_key, ev.content.membership);
  }
  return ok(out);
}

/** After a crash between createRoom and recording its answer: the room the acting user created for this old room, if any. */
async function findCreated(oldRoomId: string, acting: string, deps: RecreateDeps): Promise<string | null> {
  const rooms = await deps.client.joinedRooms(acting);
  if (!rooms.ok) return null;
  for (const roomId of rooms.value.joined_rooms) {
    const create = await deps.client.stateEvent(roomId, 'm.room.create', '', { asUser: acting });
    if (create.ok && create.value[RESTORED_FROM_KEY] === oldRoomId) return roomId;
  }
  return null;
}

/**
 * Per-room account data (tags, client settings) lives under the room id: copy each member's from
 * the old id (where restore users put it back) to the new room, and point m.direct at the new
 * room. Returns problems.
 */
async function moveRoomAccountData(oldRoomId: string, newRoomId: string, members: readonly string[], deps: RecreateDeps, signal: AbortSignal): Promise<string[]> {
  const problems: string[] = [];
  for (const user of members) {
    if (user === deps.botUserId) continue;
    const data = await deps.http.request<{ account_data?: { global?: Record<string, unknown>; rooms?: Record<string, Record<string, unknown>> } }>('GET', path`/_synapse/admin/v1/users/${user}/accountdata`, { signal });
    if (!data.ok) {
      problems.push(`${user}'s room account data not moved: ${data.error.human}`);
      continue;
    }
    const old = data.value.account_data?.rooms?.[oldRoomId] ?? {};
    const already = data.value.account_data?.rooms?.[newRoomId] ?? {};
    for (const [type, content] of Object.entries(old)) {
      if (!isJsonObject(content) || Object.hasOwn(already, type)) continue;
      if (type === 'm.fully_read') {
        // Synapse takes a read marker only through /read_markers: it joins those restore users
        // recorded from the dump, set with them once the room is done (room-read-markers.ts).
        if (typeof content.event_id === 'string') deps.store.recordMarker(user, oldRoomId, content.event_id, { keepExisting: true });
        continue;
      }
      if (type === 'm.push_rules') continue;
      const put = await deps.http.request('PUT', path`/_matrix/client/v3/user/${user}/rooms/${newRoomId}/account_data/${type}`, { body: content, asUser: user, signal });
      if (!put.ok) problems.push(`${user}'s ${type} not moved: ${put.error.human}`);
    }
    const direct = data.value.account_data?.global?.['m.direct'];
    if (isJsonObject(direct) && Object.values(direct).some((rooms) => Array.isArray(rooms) && rooms.includes(oldRoomId))) {
      const next = Object.fromEntries(Object.entries(direct).map(([who, rooms]) => [who, Array.isArray(rooms) ? [...new Set(rooms.map((r) => (r === oldRoomId ? newRoomId : r)))] : rooms]));
      const put = await deps.http.request('PUT', path`/_matrix/client/v3/user/${user}/account_data/m.direct`, { body: next, asUser: user, signal });
      if (!put.ok) problems.push(`${user}'s m.direct not updated: ${put.error.human}`);
    }
  }
  return problems;
}
