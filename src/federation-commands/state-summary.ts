import { isJsonObject, type JsonObject } from '../federation/json-object.ts';
import { senderServer } from '../federation/server-name.ts';
import { escapeHtml } from '../util/html.ts';

/** What an admin wants to know first about a room's state: who, who may do what, who may join and read. */
export interface StateSummary {
  readonly name: string | null;
  readonly topic: string | null;
  readonly canonicalAlias: string | null;
  readonly creator: string | null;
  /** Room version 12+: the creators, whose power is above any level (sender of the create event and additional_creators). */
  readonly creators: readonly string[];
  readonly joinRule: string | null;
  /** Rooms whose members may join a restricted / knock_restricted room. */
  readonly joinAllowRooms: readonly string[];
  readonly historyVisibility: string | null;
  readonly guestAccess: string | null;
  readonly encryption: string | null;
  /** Server name → membership → count, servers sorted by name. */
  readonly membersByServer: ReadonlyArray<{ readonly server: string; readonly memberships: Readonly<Record<string, number>> }>;
  readonly membershipTotals: Readonly<Record<string, number>>;
  readonly powerLevels: PowerLevelSummary | null;
  readonly stateEventCount: number;
}

export interface PowerLevelSummary {
  /** Users whose level differs from users_default, highest first. */
  readonly users: ReadonlyArray<readonly [string, number]>;
  readonly usersDefault: number;
  readonly eventsDefault: number;
  readonly stateDefault: number;
  readonly ban: number;
  readonly kick: number;
  readonly redact: number;
  readonly invite: number;
  /** Per-event-type levels, sorted by type. */
  readonly events: ReadonlyArray<readonly [string, number]>;
}

const MEMBERSHIP_ORDER = ['join', 'invite', 'knock', 'leave', 'ban'];

/** Summarises state events (already verified); `roomVersionId` decides how creators are counted. */
export function summariseState(state: readonly JsonObject[], roomVersionId: string): StateSummary {
  const byKey = new Map<string, JsonObject>();
  for (const ev of state) {
    if (typeof ev['type'] === 'string' && typeof ev['state_key'] === 'string') byKey.set(`${ev['type']}\u0000${ev['state_key']}`, ev);
  }
  const get = (type: string, stateKey = ''): JsonObject | undefined => byKey.get(`${type}\u0000${stateKey}`);
  const contentOf = (type: string): JsonObject => {
    const content = get(type)?.['content'];
    return isJsonObject(content) ? content : {};
  };
  const str = (type: string, key: string): string | null => {
    const v = contentOf(type)[key];
    return typeof v === 'string' ? v : null;
  };

  const create = get('m.room.create');
  const createContent = contentOf('m.room.create');
  const createSender = typeof create?.['sender'] === 'string' ? create['sender'] : null;
  // Before v11 the creator was named in the content; from v11 it is the sender.
  const creator = typeof createContent['creator'] === 'string' ? createContent['creator'] : createSender;
  const creators: string[] = [];
  if (isV12Plus(roomVersionId) && createSender !== null) {
    creators.push(createSender);
    const extra = createContent['additional_creators'];
    if (Array.isArray(extra)) for (const u of extra) if (typeof u === 'string' && !creators.includes(u)) creators.push(u);
  }

  const servers = new Map<string, Record<string, number>>();
  const totals: Record<string, number> = {};
  for (const ev of byKey.values()) {
    if (ev['type'] !== 'm.room.member') continue;
    const content = isJsonObject(ev['content']) ? ev['content'] : {};
    const membership = typeof content['membership'] === 'string' ? content['membership'] : '(none)';
    const server = senderServer(String(ev['state_key']));
    const name = server.ok ? server.value : '(not a user id)';
    const counts = servers.get(name) ?? {};
    counts[membership] = (counts[membership] ?? 0) + 1;
    servers.set(name, counts);
    totals[membership] = (totals[membership] ?? 0) + 1;
  }
  const membersByServer = [...servers.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([server, memberships]) => ({ server, memberships: orderMemberships(memberships) }));

  const joinRules = contentOf('m.room.join_rules');
  const allow = Array.isArray(joinRules['allow'])
    ? joinRules['allow'].flatMap((a) => (isJsonObject(a) && typeof a['room_id'] === 'string' ? [a['room_id']] : []))
    : [];

  return {
    name: str('m.room.name', 'name'),
    topic: str('m.room.topic', 'topic'),
    canonicalAlias: str('m.room.canonical_alias', 'alias'),
    creator,
    creators,
    joinRule: typeof joinRules['join_rule'] === 'string' ? joinRules['join_rule'] : null,
    joinAllowRooms: allow,
    historyVisibility: str('m.room.history_visibility', 'history_visibility'),
    guestAccess: str('m.room.guest_access', 'guest_access'),
    encryption: str('m.room.encryption', 'algorithm'),
    membersByServer,
    membershipTotals: orderMemberships(totals),
    powerLevels: get('m.room.power_levels') ? summarisePowerLevels(contentOf('m.room.power_levels')) : null,
    stateEventCount: byKey.size,
  };
}

function isV12Plus(roomVersionId: string): boolean {
  return /^\d+$/.test(roomVersionId) && Number(roomVersionId) >= 12;
}

function orderMemberships(counts: Record<string, number>): Record<string, number> {
  const keys = Object.keys(counts).sort((a, b) => rank(a) - rank(b) || (a < b ? -1 : 1));
  return Object.fromEntries(keys.map((k) => [k, counts[k]!]));
}

function rank(membership: string): number {
  const i = MEMBERSHIP_ORDER.indexOf(membership);
  return i < 0 ? MEMBERSHIP_ORDER.length : i;
}

/** Levels may be integers or (before v10) strings of integers; anything else counts as absent. */
function level(value: unknown, fallback: number): number {
  if (typeof value === 'number' && Number.isInteger(value)) return value;
  if (typeof value === 'string' && /^[+-]?\d+$/.test(value.trim())) return Number(value.trim());
  return fallback;
}

/** Defaults from the spec (m.room.power_levels) for keys the event leaves out. */
export function summarisePowerLevels(content: JsonObject): PowerLevelSummary {
  const usersDefault = level(content['users_default'], 0);
  const users = isJsonObject(content['users'])
    ? Object.entries(content['users'])
      .map(([u, l]) => [u, level(l, usersDefault)] as const)
      .filter(([, l]) => l !== usersDefault)
      .sort(([ua, a], [ub, b]) => b - a || (ua < ub ? -1 : ua > ub ? 1 : 0))
    : [];
  const events = isJsonObject(content['events'])
    ? Object.entries(content['events'])
      .map(([t, l]) => [t, level(l, 0)] as const)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    : [];
  return {
    users,
    usersDefault,
    eventsDefault: level(content['events_default'], 0),
    stateDefault: level(content['state_default'], 50),
    ban: level(content['ban'], 50),
    kick: level(content['kick'], 50),
    redact: level(content['redact'], 50),
    invite: level(content['invite'], 0),
    events,
  };
}

export function membershipLine(memberships: Readonly<Record<string, number>>): string {
  const parts = Object.entries(memberships).map(([m, n]) => `${n} ${m}`);
  return parts.length ? parts.join(', ') : 'none';
}

/** The summary as lines of text (the room's plain body and the terminal). */
export function summaryLines(s: StateSummary): string[] {
  const lines: string[] = [];
  lines.push(`Name: ${s.name ?? '(none)'}${s.canonicalAlias ? ` · alias ${s.canonicalAlias}` : ''}`);
  if (s.topic) lines.push(`Topic: ${oneLine(s.topic, 200)}`);
  if (s.creators.length) lines.push(`Creators (above every power level): ${s.creators.join(', ')}`);
  else if (s.creator) lines.push(`Creator: ${s.creator}`);
  const total = Object.values(s.membershipTotals).reduce((a, b) => a + b, 0);
  lines.push(`Members (${total}: ${membershipLine(s.membershipTotals)}) by server:`);
  for (const { server, memberships } of s.membersByServer) lines.push(`  ${server}: ${membershipLine(memberships)}`);
  lines.push(...powerLevelLines(s.powerLevels));
  const allow = s.joinAllowRooms.length ? ` (members of ${s.joinAllowRooms.join(', ')})` : '';
  lines.push(`Join rule: ${s.joinRule ?? '(none: invite)'}${allow} · history visibility: ${s.historyVisibility ?? '(none: shared)'} · guest access: ${s.guestAccess ?? '(none: forbidden)'}${s.encryption ? ` · encrypted (${s.encryption})` : ''}`);
  return lines;
}

export function powerLevelLines(p: PowerLevelSummary | null): string[] {
  if (p === null) return ['Power levels: no m.room.power_levels event (spec defaults: the creator 100, everyone else 0)'];
  const users = p.users.length ? p.users.map(([u, l]) => `${u} ${l}`).join(', ') : 'no user has a level of their own';
  const lines = [
    `Power levels: ${users}; everyone else ${p.usersDefault}`,
    `  thresholds: ban ${p.ban}, kick ${p.kick}, redact ${p.redact}, invite ${p.invite}, state ${p.stateDefault}, messages ${p.eventsDefault}`,
  ];
  if (p.events.length) lines.push(`  per event type: ${p.events.map(([t, l]) => `${t} ${l}`).join(', ')}`);
  return lines;
}

/** The summary as HTML (escaped). */
export function summaryHtml(s: StateSummary): string {
  const total = Object.values(s.membershipTotals).reduce((a, b) => a + b, 0);
  const e = escapeHtml;
  const parts: string[] = [];
  parts.push(`<b>Name:</b> ${s.name === null ? '<i>(none)</i>' : e(s.name)}${s.canonicalAlias ? ` · alias <code>${e(s.canonicalAlias)}</code>` : ''}`);
  if (s.topic) parts.push(`<b>Topic:</b> ${e(oneLine(s.topic, 200))}`);
  if (s.creators.length) parts.push(`<b>Creators</b> (above every power level): ${s.creators.map((c) => `<code>${e(c)}</code>`).join(', ')}`);
  else if (s.creator) parts.push(`<b>Creator:</b> <code>${e(s.creator)}</code>`);
  const members = s.membersByServer.map(({ server, memberships }) => `<li><code>${e(server)}</code>: ${e(membershipLine(memberships))}</li>`).join('');
  parts.push(`<b>Members</b> (${total}: ${e(membershipLine(s.membershipTotals))}) by server:<ul>${members}</ul>`);
  const [first, ...rest] = powerLevelLines(s.powerLevels);
  parts.push(`<b>${e(first!.split(':')[0]!)}:</b>${e(first!.slice(first!.indexOf(':') + 1))}${rest.map((l) => `<br>${e(l.trim())}`).join('')}`);
  const allow = s.joinAllowRooms.length ? ` (members of ${s.joinAllowRooms.map((r) => `<code>${e(r)}</code>`).join(', ')})` : '';
  parts.push(`<b>Join rule:</b> ${e(s.joinRule ?? '(none: invite)')}${allow} · <b>history visibility:</b> ${e(s.historyVisibility ?? '(none: shared)')} · <b>guest access:</b> ${e(s.guestAccess ?? '(none: forbidden)')}${s.encryption ? ` · encrypted (${e(s.encryption)})` : ''}`);
  return parts.map((p) => (p.includes('<ul>') ? p : `${p}<br>`)).join('');
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
