import { isJsonObject } from '../federation/json-object.ts';
import type { DumpStateEvent, RoomDocument } from './room-dump-reader.ts';

/** The server part of a user id (`@local:server`, the server may carry a port). */
export function serverOfUser(userId: string): string | undefined {
  const colon = userId.indexOf(':');
  return userId.startsWith('@') && colon > 1 ? userId.slice(colon + 1) : undefined;
}

/** State that recreation sets in its own steps (or must not copy): everything else goes into initial_state. */
const SET_APART = new Set(['m.room.create', 'm.room.member', 'm.room.power_levels', 'm.room.canonical_alias', 'm.room.encryption', 'm.room.tombstone']);

export interface RejoinPlan {
  readonly kind: 'rejoin';
  readonly roomId: string;
  /** Servers with joined members in the dump's state: where to learn the room's current state. */
  readonly via: readonly string[];
  /** Our users joined in the dump's state (the remote state decides who is joined now). */
  readonly localMembers: readonly string[];
  readonly aliases: readonly string[];
  readonly published: boolean;
}

export interface RecreatePlan {
  readonly kind: 'recreate';
  readonly roomId: string;
  readonly roomVersion: string | null;
  /** Who should create the new room, best first: the old creator, then local users by power. */
  readonly creatorCandidates: readonly string[];
  /** The create event's content worth keeping (m.federate, type, additional_creators). */
  readonly createContent: Record<string, unknown>;
  readonly initialState: readonly DumpStateEvent[];
  readonly powerLevels: Record<string, unknown> | null;
  readonly encryption: Record<string, unknown> | null;
  readonly canonicalAlias: Record<string, unknown> | null;
  /** Aliases on our server: the directory's list, plus those named in the canonical alias event. */
  readonly aliases: readonly string[];
  readonly published: boolean;
  readonly joined: readonly string[];
  readonly invited: readonly string[];
  readonly banned: readonly string[];
}

export type RoomPlan = RejoinPlan | RecreatePlan | { readonly kind: 'skip'; readonly roomId: string; readonly reason: string };

function membership(state: readonly DumpStateEvent[], which: string): string[] {
  return state.filter((e) => e.type === 'm.room.member' && e.content.membership === which).map((e) => e.state_key).sort();
}

function localAliases(doc: RoomDocument, canonical: Record<string, unknown> | null, ownServer: string): string[] {
  const out = new Set<string>();
  const mine = (a: unknown): a is string => typeof a === 'string' && a.startsWith('#') && a.endsWith(`:${ownServer}`) && a.indexOf(':') === a.length - ownServer.length - 1;
  for (const a of doc.aliases ?? []) if (mine(a)) out.add(a);
  if (canonical) {
    if (mine(canonical.alias)) out.add(canonical.alias);
    if (Array.isArray(canonical.alt_aliases)) for (const a of canonical.alt_aliases) if (mine(a)) out.add(a);
  }
  return [...out].sort();
}

/** v12 (MSC4289): the creators hold unlimited power and must not be listed in the users map. */
export function creatorsHavePower(version: string | null): boolean {
  return version === '12' || version === 'org.matrix.hydra.11';
}

/**
 * What to do with one room of the dump, from its state alone. A room where other servers still
 * have joined members is rejoined through them (it lives on there, with its history); a room only
 * our server was in is recreated from the dumped state.
 */
export function planRoom(doc: RoomDocument, ownServer: string): RoomPlan {
  const joined = membership(doc.state, 'join');
  const local = joined.filter((u) => serverOfUser(u) === ownServer);
  const others = [...new Set(joined.map(serverOfUser).filter((s): s is string => s !== undefined && s !== ownServer))].sort();
  const get = (type: string): DumpStateEvent | undefined => doc.state.find((e) => e.type === type && e.state_key === '');
  const canonical = get('m.room.canonical_alias')?.content ?? null;
  const aliases = localAliases(doc, canonical, ownServer);
  const published = doc.details.public === true;
  if (others.length > 0) {
    if (local.length === 0) return { kind: 'skip', roomId: doc.roomId, reason: 'none of our users was joined: the room lives on on other servers without us' };
    return { kind: 'rejoin', roomId: doc.roomId, via: others, localMembers: local, aliases, published };
  }
  if (local.length === 0) return { kind: 'skip', roomId: doc.roomId, reason: 'nobody was joined when it was dumped' };

  const create = get('m.room.create')!;
  const power = get('m.room.power_levels')?.content ?? null;
  const levels = power && isJsonObject(power.users) ? power.users : {};
  const levelOf = (u: string): number => (typeof levels[u] === 'number' ? levels[u] : typeof power?.users_default === 'number' ? power.users_default : 0);
  const oldCreator = typeof create.content.creator === 'string' ? create.content.creator : create.sender;
  const byPower = [...local].sort((a, b) => levelOf(b) - levelOf(a) || (a < b ? -1 : 1));
  const creatorCandidates = [...new Set([...(oldCreator && serverOfUser(oldCreator) === ownServer ? [oldCreator] : []), ...byPower])];
  const createContent: Record<string, unknown> = {};
  for (const key of ['m.federate', 'type', 'additional_creators']) if (create.content[key] !== undefined) createContent[key] = create.content[key];
  return {
    kind: 'recreate',
    roomId: doc.roomId,
    roomVersion: doc.roomVersion,
    creatorCandidates,
    createContent,
    initialState: doc.state.filter((e) => !SET_APART.has(e.type)),
    powerLevels: power,
    encryption: get('m.room.encryption')?.content ?? null,
    canonicalAlias: canonical,
    aliases,
    published,
    joined: local,
    invited: membership(doc.state, 'invite'),
    banned: membership(doc.state, 'ban'),
  };
}

/**
 * Power levels for the new room. `final`: the dumped ones (creators taken out of the users map in
 * v12 rooms). Otherwise the ones the restore works under: the same, with the acting user at 100 (and the
 * bot, which posts history for senders who are gone, at 99) and everyone allowed to post, so that
 * history is re-posted by whoever sent it then.
 */
export function powerLevelsFor(dumped: Record<string, unknown> | null, opts: { final: boolean; version: string | null; creators: readonly string[]; acting: string; bot?: string }): Record<string, unknown> {
  const base: Record<string, unknown> = dumped ? structuredClone(dumped) : { users: {} };
  const users: Record<string, unknown> = isJsonObject(base.users) ? { ...base.users } : {};
  if (!opts.final) {
    if (!creatorsHavePower(opts.version)) users[opts.acting] = 100;
    // 99, not 100: the acting user must be able to take the bot out again with the final levels.
    if (opts.bot) users[opts.bot] = 99;
    base.events_default = 0;
    base.events = {};
  }
  if (creatorsHavePower(opts.version)) for (const c of opts.creators) delete users[c];
  base.users = users;
  return base;
}
