/**
 * An anonymised snapshot as a Complement blueprint, the request homerunner takes
 * (`HOMERUNNER_SNAPSHOT_BLUEPRINT=file.json`): `{"blueprint": …, "base_image_uri": …}` with the Go
 * field names of complement's `b.Blueprint` (Name, Homeservers, Users, Rooms, Ref, Creator,
 * CreateRoom, Events, AccountData, KeepAccessTokensForUsers) and events in lowercase
 * (type, sender, state_key, content). Pure: no I/O.
 *
 * Beyond Complement, which Go's decoder ignores and homerunner therefore does not use:
 * - every event from the snapshot carries `event_id` (its anonymised id) and a redaction carries
 *   `redacts`, so reactions, redactions, replies and pins can be followed inside the file; a replayer
 *   that wants them live maps each `event_id` to the id the server gives it and substitutes it in
 *   later contents (homerunner has no such step: it sends them with the ids of the file);
 * - a top-level `steward` section: format, counts, limits and the leak-check result.
 * `m.direct` is the account data of the snapshotted user (`User.AccountData`, the shape Complement's
 * account-snapshot writes: `{"Type": "m.direct", "Value": {"content": {…}}}`); homerunner's runner
 * currently does not replay account data.
 *
 * Replay order per room (the creator creates the room and sets the scene, as Complement does):
 * join rule "public" so members can join; joins of members, invites and bans from the creator;
 * the other state from the creator; power levels last (they may take the creator's power away);
 * then the timeline in order. A timeline join that the join rule of that moment would refuse is
 * preceded by an invite from the creator; transitions a server refuses (leave when not in the room,
 * knock, unban) are left out; the creator's own later membership is applied at the end so the room
 * is never left empty mid-replay.
 */
import type { AnonEvent, AnonRoom, AnonSnapshot } from './anonymiser.ts';
import type { JsonObject } from './json.ts';
import { ANON_SERVER, DEFAULT_BASE_IMAGE } from './rules.ts';

export const SNAPSHOT_FORMAT = 'steward.snapshot/1';

export interface BlueprintEvent {
  type: string;
  sender: string;
  state_key?: string;
  content: JsonObject;
  /** Steward extension: the anonymised id of this event in the snapshot. */
  event_id?: string;
  /** Steward extension (redactions): the anonymised id of the redacted event. */
  redacts?: string;
}

export interface BlueprintRoom {
  Ref: string;
  Creator: string;
  CreateRoom: JsonObject;
  Events: BlueprintEvent[];
}

export interface BlueprintAccountData {
  Type: string;
  Value: JsonObject;
}

export interface BlueprintUser {
  Localpart: string;
  DisplayName: string;
  AccountData?: BlueprintAccountData[];
}

export interface BlueprintHomeserver {
  Name: string;
  Users: BlueprintUser[];
  Rooms: BlueprintRoom[];
}

export interface Blueprint {
  Name: string;
  Homeservers: BlueprintHomeserver[];
  KeepAccessTokensForUsers: string[];
}

export interface ReplayStats {
  /** Membership changes a replay could not perform and that were left out. */
  transitions_skipped: number;
  /** Invites added before timeline joins that the join rule would have refused. */
  invites_added: number;
}

export interface StewardSection {
  format: string;
  created_ts: number;
  timeline_limit: number;
  counts: Record<string, number>;
  leak_check?: { sensitive_strings: number; leaks: number; heuristic_hits: number };
}

export interface SnapshotDocument {
  blueprint: Blueprint;
  base_image_uri: string;
  steward: StewardSection;
}

export interface BlueprintOptions {
  /** Blueprint (and image) name; Docker wants lower-case letters, digits and underscores. */
  readonly name: string;
  readonly baseImage?: string;
  readonly createdTs: number;
  readonly timelineLimit: number;
  /** Rooms that could not be anonymised (counted only). */
  readonly roomsFailed?: number;
}

function localpart(anonUserId: string): string {
  return anonUserId.slice(1, anonUserId.indexOf(':'));
}

function anonNumber(anonUserId: string): number {
  return Number(/^@anon-(\d+):/.exec(anonUserId)?.[1] ?? Number.MAX_SAFE_INTEGER);
}

function toEvent(e: AnonEvent, sender = e.sender): BlueprintEvent {
  return {
    type: e.type,
    sender,
    ...(e.state_key !== undefined ? { state_key: e.state_key } : {}),
    content: e.content,
    event_id: e.event_id,
    ...(e.redacts ? { redacts: e.redacts } : {}),
  };
}

function createRoomBody(create: AnonEvent | undefined): JsonObject {
  const c = create?.content ?? {};
  const body: JsonObject = {};
  if (typeof c.room_version === 'string') body.room_version = c.room_version;
  const creation: JsonObject = {};
  for (const key of ['m.federate', 'type', 'predecessor', 'additional_creators']) if (c[key] !== undefined) creation[key] = c[key]!;
  if (Object.keys(creation).length > 0) body.creation_content = creation;
  return body;
}

export function buildRoom(room: AnonRoom, stats: ReplayStats): BlueprintRoom {
  const creator = room.creator;
  const events: BlueprintEvent[] = [];
  const membership = new Map<string, string>([[creator, 'join']]);
  const create = [...room.state, ...room.timeline].find((e) => e.type === 'm.room.create');
  let creatorFinal = 'join';
  const isMember = (e: AnonEvent): boolean => e.type === 'm.room.member' && e.state_key !== undefined;
  const members = room.state.filter(isMember);
  for (const m of members) if (m.state_key === creator) creatorFinal = String(m.content.membership);

  let joinRule = 'invite'; // what createRoom's default (private) preset sets
  const needsOpenDoor = members.some((m) => m.state_key !== creator && m.content.membership === 'join')
    || room.timeline.some((e) => isMember(e) && e.state_key !== creator && e.content.membership === 'join');
  if (needsOpenDoor) {
    events.push({ type: 'm.room.join_rules', sender: creator, state_key: '', content: { join_rule: 'public' } });
    joinRule = 'public';
  }
  for (const wanted of ['join', 'invite', 'ban']) {
    for (const m of members) {
      if (m.state_key === creator || m.content.membership !== wanted) continue;
      const user = m.state_key!;
      events.push(toEvent(m, wanted === 'join' ? user : creator));
      membership.set(user, wanted);
    }
  }
  for (const m of members) if (m.state_key !== creator && !['join', 'invite', 'ban'].includes(String(m.content.membership))) stats.transitions_skipped += 1;

  let powerLevels: AnonEvent | undefined;
  for (const e of room.state) {
    if (e.type === 'm.room.create' || isMember(e)) continue;
    if (e.type === 'm.room.power_levels') {
      powerLevels = e;
      continue;
    }
    if (e.type === 'm.room.join_rules' && typeof e.content.join_rule === 'string') joinRule = e.content.join_rule;
    events.push(toEvent(e, creator));
  }
  if (powerLevels) events.push(toEvent(powerLevels, creator));

  for (const e of room.timeline) {
    if (e.type === 'm.room.create') continue;
    if (isMember(e)) {
      const target = e.state_key!;
      const wanted = String(e.content.membership);
      if (target === creator) {
        creatorFinal = wanted;
        continue;
      }
      const current = membership.get(target) ?? 'leave';
      const refused = wanted === 'knock'
        || (wanted === 'leave' && !['join', 'invite'].includes(current))
        || (wanted === 'join' && current === 'ban');
      if (refused) {
        stats.transitions_skipped += 1;
        continue;
      }
      if (wanted === 'join' && current !== 'join' && current !== 'invite' && joinRule !== 'public') {
        events.push({ type: 'm.room.member', sender: creator, state_key: target, content: { membership: 'invite' } });
        stats.invites_added += 1;
      }
      membership.set(target, wanted);
    } else if (e.type === 'm.room.join_rules' && typeof e.content.join_rule === 'string') {
      joinRule = e.content.join_rule;
    }
    events.push(toEvent(e));
  }
  if (creatorFinal !== 'join') {
    events.push({ type: 'm.room.member', sender: creator, state_key: creator, content: { membership: 'leave' } });
  }
  return { Ref: room.id, Creator: creator, CreateRoom: createRoomBody(create), Events: events };
}

/** Every anonymised user who does something in the replay (sends, is a member, creates) or is a DM partner. */
function usersOf(rooms: readonly BlueprintRoom[], subject: string, direct: Record<string, string[]>): string[] {
  const users = new Set<string>([subject, ...Object.keys(direct)]);
  for (const room of rooms) {
    users.add(room.Creator);
    for (const e of room.Events) {
      users.add(e.sender);
      if (e.type === 'm.room.member' && e.state_key) users.add(e.state_key);
    }
  }
  return [...users].filter((u) => u.endsWith(`:${ANON_SERVER}`)).sort((a, b) => anonNumber(a) - anonNumber(b));
}

export function buildBlueprint(snapshot: AnonSnapshot, opts: BlueprintOptions): SnapshotDocument {
  const replay: ReplayStats = { transitions_skipped: 0, invites_added: 0 };
  const rooms = snapshot.rooms.map((r) => buildRoom(r, replay));
  const users: BlueprintUser[] = usersOf(rooms, snapshot.subject, snapshot.direct).map((id) => {
    const user: BlueprintUser = { Localpart: localpart(id), DisplayName: localpart(id) };
    if (id === snapshot.subject && Object.keys(snapshot.direct).length > 0) {
      user.AccountData = [{ Type: 'm.direct', Value: { content: snapshot.direct } }];
    }
    return user;
  });
  const events = rooms.reduce((n, r) => n + r.Events.length, 0);
  return {
    blueprint: {
      Name: opts.name,
      Homeservers: [{ Name: ANON_SERVER, Users: users, Rooms: rooms }],
      KeepAccessTokensForUsers: [snapshot.subject],
    },
    base_image_uri: opts.baseImage ?? DEFAULT_BASE_IMAGE,
    steward: {
      format: SNAPSHOT_FORMAT,
      created_ts: opts.createdTs,
      timeline_limit: opts.timelineLimit,
      counts: {
        rooms: rooms.length,
        rooms_failed: opts.roomsFailed ?? 0,
        users: users.length,
        blueprint_events: events,
        ...snapshot.stats,
        ...replay,
      },
    },
  };
}

/** A Docker-friendly blueprint name with no trace of the account: `snapshot_anon1_20250101t120000z`. */
export function blueprintName(createdTs: number): string {
  return `snapshot_anon1_${new Date(createdTs).toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'z').toLowerCase()}`;
}
