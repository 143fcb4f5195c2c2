/**
 * Turns a `/sync` answer (federation event format, joined rooms) into an anonymised snapshot. Pure:
 * no I/O, no clock, no randomness; the same input always gives the same output.
 *
 * Rules (Complement's account-snapshot, extended):
 * - whitelist of event types and, per type, of content keys (rules.ts); everything else is dropped;
 * - text becomes `x` per non-space character, so length and line shape survive;
 * - avatar and media URLs become "yes";
 * - ids are replaced by counters in first-seen order, never hashes (a hash of a known id can be
 *   looked up): users `@anon-<n>:hs1` (the account itself is `@anon-1:hs1`), rooms `!<n>:hs1`
 *   (joined rooms first, in sorted order), events `$<n>:hs1`, aliases `#alias-<n>:hs1`, other
 *   servers `server-<n>` (ours is `hs1`), devices `device-<n>`;
 * - reactions and redactions are kept when their target is an event of the snapshot and then
 *   point at its anonymised id; otherwise they are dropped (a redaction of a dropped reaction too);
 *   replies, edits and thread links to events outside the snapshot are removed from the message;
 * - reaction keys: a single emoji is kept (it says nothing about who wrote it); any other key is
 *   user text and becomes `x`s.
 */
import { failure, ok, type Result } from '../util/result.ts';
import { asArray, asObject, asString, isUserId, type Json, type JsonObject } from './json.ts';
import { ANON_SERVER, ENUMS, KNOWN_EVENT_TYPES, ROOM_VERSION, WHITELISTED_TYPES } from './rules.ts';

export interface AnonEvent {
  /** Anonymised id of the snapshot (`$<n>:hs1`); what reactions, redactions and pins point at. */
  readonly event_id: string;
  readonly type: string;
  readonly sender: string;
  readonly state_key?: string;
  readonly content: JsonObject;
  /** Redactions only: the anonymised target (also in content.redacts, as room v11 has it). */
  readonly redacts?: string;
}

export interface AnonRoom {
  /** `!<n>:hs1` */
  readonly id: string;
  readonly creator: string;
  /** State at the start of the timeline (the /sync `state` section). */
  readonly state: readonly AnonEvent[];
  readonly timeline: readonly AnonEvent[];
}

export interface AnonStats {
  events_read: number;
  events_kept: number;
  /** Events of types outside the whitelist. */
  events_not_whitelisted: number;
  /** Whitelisted events dropped because they could not be anonymised (no sender, bad membership…). */
  events_malformed: number;
  reactions_kept: number;
  reactions_dropped: number;
  redactions_kept: number;
  redactions_dropped: number;
  /** Replies, edits or thread links removed because their target is not in the snapshot. */
  relations_removed: number;
}

export interface AnonSnapshot {
  /** The anonymised account: always `@anon-1:hs1`. */
  readonly subject: string;
  readonly rooms: readonly AnonRoom[];
  /** `m.direct` remapped: anonymised user → anonymised rooms of this snapshot. */
  readonly direct: Record<string, string[]>;
  readonly stats: AnonStats;
}

const WHITELIST = new Set(WHITELISTED_TYPES);
const KNOWN_TYPES = new Set(KNOWN_EVENT_TYPES);
const NON_SPACE = /\S/gu;

/** `x` per non-space character (code point); spaces and newlines stay, so the shape survives. */
export function redactText(text: string): string {
  return text.replace(NON_SPACE, 'x');
}

const segmenter = new Intl.Segmenter('en', { granularity: 'grapheme' });

/** One grapheme that is an emoji (pictograph, flag or keycap) and no letter. */
export function isSingleEmoji(key: string): boolean {
  if (key.length === 0 || key.length > 64 || /\p{L}/u.test(key)) return false;
  let count = 0;
  for (const _ of segmenter.segment(key)) if (++count > 1) return false;
  return /\p{Extended_Pictographic}|\p{Regional_Indicator}|\u20E3/u.test(key);
}

/** A reaction key as the snapshot keeps it. */
export function anonymiseReactionKey(key: string): string {
  return isSingleEmoji(key) ? key : redactText(key);
}

function oneOf<T extends string>(list: readonly T[], v: unknown): T | undefined {
  return typeof v === 'string' && (list as readonly string[]).includes(v) ? (v as T) : undefined;
}

function num(v: unknown): number | undefined {
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  // Old rooms carry power levels as strings of digits; the number is what matters.
  if (typeof v === 'string' && /^-?\d{1,15}$/.test(v)) return Number(v);
  return undefined;
}

function bool(v: unknown): boolean | undefined {
  return typeof v === 'boolean' ? v : undefined;
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' ? redactText(v) : undefined;
}

function put(out: JsonObject, key: string, value: Json | undefined): void {
  if (value !== undefined) out[key] = value;
}

function nonEmpty(o: JsonObject): JsonObject | undefined {
  return Object.keys(o).length > 0 ? o : undefined;
}

interface RawEvent {
  readonly raw: Record<string, unknown>;
  readonly type: string;
  readonly sender: string;
  readonly eventId: string | undefined;
  readonly section: 'state' | 'timeline';
}

/** Joined rooms of a /sync answer, sorted by room id (the order room counters follow). */
export function joinedRooms(sync: unknown): [roomId: string, room: unknown][] {
  const join = asObject(asObject(asObject(sync)?.rooms)?.join) ?? {};
  return Object.keys(join).sort().map((id) => [id, join[id]]);
}

export class Anonymiser {
  private readonly ownServer: string;
  private readonly users = new Map<string, string>();
  private readonly rooms = new Map<string, string>();
  private readonly servers = new Map<string, string>();
  private readonly aliases = new Map<string, string>();
  private readonly devices = new Map<string, string>();
  private readonly events = new Map<string, string>();
  private readonly done: AnonRoom[] = [];
  private eventCount = 0;
  readonly subject: string;
  readonly stats: AnonStats = {
    events_read: 0, events_kept: 0, events_not_whitelisted: 0, events_malformed: 0,
    reactions_kept: 0, reactions_dropped: 0, redactions_kept: 0, redactions_dropped: 0, relations_removed: 0,
  };

  /** `subject` is the account being snapshotted: it becomes `@anon-1:hs1`. */
  constructor(opts: { subject: string; serverName: string }) {
    this.ownServer = opts.serverName;
    this.servers.set(opts.serverName, ANON_SERVER);
    this.subject = this.user(opts.subject) ?? `@anon-1:${ANON_SERVER}`;
  }

  /** Gives the joined rooms their numbers first, so references between them resolve in any order. */
  reserveRooms(roomIds: readonly string[]): void {
    for (const id of roomIds) this.room(id);
  }

  user(userId: unknown): string | undefined {
    if (!isUserId(userId)) return undefined;
    let anon = this.users.get(userId);
    if (!anon) {
      anon = `@anon-${this.users.size + 1}:${ANON_SERVER}`;
      this.users.set(userId, anon);
    }
    return anon;
  }

  room(roomId: string): string {
    let anon = this.rooms.get(roomId);
    if (!anon) {
      anon = `!${this.rooms.size + 1}:${ANON_SERVER}`;
      this.rooms.set(roomId, anon);
    }
    return anon;
  }

  server(name: string): string {
    let anon = this.servers.get(name);
    if (!anon) {
      anon = `server-${this.servers.size}`;
      this.servers.set(name, anon);
    }
    return anon;
  }

  private alias(alias: string): string {
    let anon = this.aliases.get(alias);
    if (!anon) {
      anon = `#alias-${this.aliases.size + 1}:${ANON_SERVER}`;
      this.aliases.set(alias, anon);
    }
    return anon;
  }

  private device(deviceId: string): string {
    let anon = this.devices.get(deviceId);
    if (!anon) {
      anon = `device-${this.devices.size + 1}`;
      this.devices.set(deviceId, anon);
    }
    return anon;
  }

  /** "user #3" for a real user id the snapshot mapped: a label that names nobody. */
  userLabel(userId: string): string | undefined {
    const anon = this.users.get(userId);
    return anon ? `user #${anon.slice('@anon-'.length, anon.indexOf(':'))}` : undefined;
  }

  roomLabel(roomId: string): string | undefined {
    const anon = this.rooms.get(roomId);
    return anon ? `room #${anon.slice(1, anon.indexOf(':'))}` : undefined;
  }

  /** Anonymises one joined room. A room without a create event cannot be replayed and fails. */
  anonymiseRoom(roomId: string, room: unknown): Result<AnonRoom> {
    const anonId = this.room(roomId);
    const data = asObject(room) ?? {};
    const raw: RawEvent[] = [];
    for (const section of ['state', 'timeline'] as const) {
      for (const ev of asArray(asObject(data[section])?.events)) {
        this.stats.events_read += 1;
        const e = asObject(ev);
        const type = asString(e?.type);
        if (!e || !type || !WHITELIST.has(type)) {
          this.stats.events_not_whitelisted += 1;
          continue;
        }
        const sender = asString(e.sender);
        if (!isUserId(sender)) {
          this.stats.events_malformed += 1;
          continue;
        }
        raw.push({ raw: e, type, sender, eventId: asString(e.event_id), section });
      }
    }
    const create = raw.find((e) => e.type === 'm.room.create' && e.raw.state_key === '');
    if (!create) {
      return { ok: false, error: failure('E_NO_CREATE', `${anonId}: no m.room.create event in the sync answer, so the room cannot be replayed`) };
    }

    // Reactions and redactions live only if their target does; drop until nothing changes (a
    // redaction of a dropped reaction goes too).
    let kept = raw;
    const present = new Set(kept.flatMap((e) => (e.eventId ? [e.eventId] : [])));
    for (let changed = true; changed;) {
      changed = false;
      kept = kept.filter((e) => {
        if (e.type !== 'm.reaction' && e.type !== 'm.room.redaction') return true;
        const target = relationTarget(e);
        if (target && present.has(target)) return true;
        if (e.type === 'm.reaction') this.stats.reactions_dropped += 1;
        else this.stats.redactions_dropped += 1;
        if (e.eventId) present.delete(e.eventId);
        changed = true;
        return false;
      });
    }
    for (const e of kept) if (e.eventId && !this.events.has(e.eventId)) this.events.set(e.eventId, `$${++this.eventCount}:${ANON_SERVER}`);

    const state: AnonEvent[] = [];
    const timeline: AnonEvent[] = [];
    for (const e of kept) {
      const anon = this.event(e);
      if (!anon) {
        this.stats.events_malformed += 1;
        continue;
      }
      this.stats.events_kept += 1;
      if (anon.type === 'm.reaction') this.stats.reactions_kept += 1;
      if (anon.type === 'm.room.redaction') this.stats.redactions_kept += 1;
      (e.section === 'state' ? state : timeline).push(anon);
    }
    const anonRoom: AnonRoom = { id: anonId, creator: this.user(create.sender)!, state, timeline };
    this.done.push(anonRoom);
    return ok(anonRoom);
  }

  /** `m.direct` from the account data events, limited to rooms of this snapshot. */
  direct(accountDataEvents: unknown): Record<string, string[]> {
    const snapshotted = new Set(this.done.map((r) => r.id));
    const out: Record<string, string[]> = {};
    for (const ev of asArray(accountDataEvents)) {
      const e = asObject(ev);
      if (e?.type !== 'm.direct') continue;
      const content = asObject(e.content) ?? {};
      for (const userId of Object.keys(content).sort()) {
        const rooms = asArray(content[userId])
          .filter((r): r is string => typeof r === 'string' && this.rooms.has(r))
          .map((r) => this.rooms.get(r)!)
          .filter((r) => snapshotted.has(r));
        if (rooms.length === 0) continue;
        const anon = this.user(userId);
        if (anon) out[anon] = [...new Set([...(out[anon] ?? []), ...rooms])];
      }
    }
    return out;
  }

  snapshot(accountDataEvents: unknown): AnonSnapshot {
    return { subject: this.subject, rooms: [...this.done], direct: this.direct(accountDataEvents), stats: { ...this.stats } };
  }

  private eventId(real: unknown): string | undefined {
    return typeof real === 'string' ? this.events.get(real) : undefined;
  }

  private fresh(): string {
    return `$${++this.eventCount}:${ANON_SERVER}`;
  }

  private event(e: RawEvent): AnonEvent | undefined {
    const rawKey = e.raw.state_key;
    if (e.type === 'm.room.member' && !isUserId(rawKey)) return undefined;
    const sender = this.user(e.sender)!;
    let stateKey: string | undefined;
    if (typeof rawKey === 'string') {
      if (rawKey.startsWith('@')) {
        stateKey = this.user(rawKey);
        if (stateKey === undefined) return undefined;
      } else {
        stateKey = redactText(rawKey);
      }
    }
    const content = this.content(e, asObject(e.raw.content) ?? {}, typeof rawKey === 'string' ? rawKey : undefined);
    if (!content) return undefined;
    const event_id = (e.eventId && this.events.get(e.eventId)) || this.fresh();
    const redacts = e.type === 'm.room.redaction' ? (content.redacts as string) : undefined;
    return {
      event_id,
      type: e.type,
      sender,
      ...(stateKey !== undefined ? { state_key: stateKey } : {}),
      content,
      ...(redacts ? { redacts } : {}),
    };
  }

  /** The whitelisted keys of one event's content, each under its rule; undefined drops the event. */
  private content(e: RawEvent, c: Record<string, unknown>, rawStateKey: string | undefined): JsonObject | undefined {
    const out: JsonObject = {};
    switch (e.type) {
      case 'm.room.create': {
        put(out, 'creator', this.user(c.creator));
        put(out, 'room_version', typeof c.room_version === 'string' && ROOM_VERSION.test(c.room_version) ? c.room_version : undefined);
        put(out, 'm.federate', bool(c['m.federate']));
        put(out, 'type', oneOf(ENUMS.room_type, c.type));
        const pred = asObject(c.predecessor);
        if (pred && typeof pred.room_id === 'string') {
          const p: JsonObject = { room_id: this.room(pred.room_id) };
          put(p, 'event_id', this.eventId(pred.event_id));
          out.predecessor = p;
        }
        if (Array.isArray(c.additional_creators)) {
          out.additional_creators = c.additional_creators.flatMap((u) => this.user(u) ?? []);
        }
        return out;
      }
      case 'm.room.name':
        put(out, 'name', text(c.name));
        return out;
      case 'm.room.topic': {
        put(out, 'topic', text(c.topic));
        const mTopic = asObject(c['m.topic']);
        if (mTopic && Array.isArray(mTopic['m.text'])) {
          const parts = mTopic['m.text'].flatMap((p) => {
            const po = asObject(p);
            if (!po || typeof po.body !== 'string') return [];
            const part: JsonObject = { body: redactText(po.body) };
            put(part, 'mimetype', oneOf(['text/plain', 'text/html'], po.mimetype));
            return [part];
          });
          out['m.topic'] = { 'm.text': parts };
        }
        return out;
      }
      case 'm.room.avatar': {
        if (typeof c.url === 'string') out.url = 'yes';
        put(out, 'info', this.mediaInfo(c.info, false));
        return out;
      }
      case 'm.room.canonical_alias':
        // alt_aliases are dropped: a replay can only publish the aliases it creates itself.
        put(out, 'alias', typeof c.alias === 'string' ? this.alias(c.alias) : undefined);
        return out;
      case 'm.room.server_acl':
        for (const key of ['allow', 'deny'] as const) {
          if (Array.isArray(c[key])) out[key] = c[key].flatMap((p) => (typeof p === 'string' ? [this.aclEntry(p)] : []));
        }
        put(out, 'allow_ip_literals', bool(c.allow_ip_literals));
        return out;
      case 'm.room.encryption':
        put(out, 'algorithm', oneOf(ENUMS.algorithm, c.algorithm));
        put(out, 'rotation_period_ms', num(c.rotation_period_ms));
        put(out, 'rotation_period_msgs', num(c.rotation_period_msgs));
        return out;
      case 'm.room.guest_access':
        put(out, 'guest_access', oneOf(ENUMS.guest_access, c.guest_access));
        return out;
      case 'm.room.history_visibility':
        put(out, 'history_visibility', oneOf(ENUMS.history_visibility, c.history_visibility));
        return out;
      case 'm.room.join_rules': {
        put(out, 'join_rule', oneOf(ENUMS.join_rule, c.join_rule));
        if (Array.isArray(c.allow)) {
          out.allow = c.allow.flatMap((a): JsonObject[] => {
            const ao = asObject(a);
            const type = oneOf(ENUMS.join_rule_allow_type, ao?.type);
            if (!ao || !type) return [];
            const entry: JsonObject = { type };
            if (typeof ao.room_id === 'string') entry.room_id = this.room(ao.room_id);
            return [entry];
          });
        }
        return out;
      }
      case 'm.room.tombstone':
        put(out, 'body', text(c.body));
        put(out, 'replacement_room', typeof c.replacement_room === 'string' ? this.room(c.replacement_room) : undefined);
        return out;
      case 'm.room.pinned_events':
        out.pinned = asArray(c.pinned).flatMap((id) => this.eventId(id) ?? []);
        return out;
      case 'm.room.member': {
        const membership = oneOf(ENUMS.membership, c.membership);
        if (!membership) return undefined;
        out.membership = membership;
        const target = this.user(rawStateKey);
        if (typeof c.displayname === 'string' && target) out.displayname = target.slice(1, target.indexOf(':'));
        if (typeof c.avatar_url === 'string') out.avatar_url = 'yes';
        put(out, 'reason', text(c.reason));
        put(out, 'is_direct', bool(c.is_direct));
        return out;
      }
      case 'm.room.power_levels': {
        for (const key of ['ban', 'events_default', 'invite', 'kick', 'redact', 'state_default', 'users_default'] as const) put(out, key, num(c[key]));
        const events = asObject(c.events);
        if (events) {
          const kept: JsonObject = {};
          for (const type of Object.keys(events)) if (KNOWN_TYPES.has(type)) put(kept, type, num(events[type]));
          out.events = kept;
        }
        const users = asObject(c.users);
        if (users) {
          const kept: JsonObject = {};
          for (const userId of Object.keys(users)) {
            const anon = this.user(userId);
            const level = num(users[userId]);
            if (anon && level !== undefined) kept[anon] = level;
          }
          out.users = kept;
        }
        const notifications = asObject(c.notifications);
        if (notifications) {
          const room = num(notifications.room);
          out.notifications = room === undefined ? {} : { room };
        }
        return out;
      }
      case 'm.room.encrypted': {
        put(out, 'algorithm', oneOf(ENUMS.algorithm, c.algorithm));
        if (typeof c.ciphertext === 'string') out.ciphertext_length = c.ciphertext.length;
        if (typeof c.device_id === 'string') out.device_id = this.device(c.device_id);
        put(out, 'm.relates_to', this.relation(c['m.relates_to']));
        return out;
      }
      case 'm.room.redaction': {
        const target = this.eventId(relationTarget(e));
        if (!target) return undefined;
        out.redacts = target;
        put(out, 'reason', text(c.reason));
        return out;
      }
      case 'm.room.message': {
        this.messageBody(c, out);
        put(out, 'filename', text(c.filename));
        put(out, 'info', this.mediaInfo(c.info, true));
        const newContent = asObject(c['m.new_content']);
        if (newContent) {
          const nc: JsonObject = {};
          this.messageBody(newContent, nc);
          out['m.new_content'] = nc;
        }
        put(out, 'm.relates_to', this.relation(c['m.relates_to']));
        const mentions = asObject(c['m.mentions']);
        if (mentions) {
          const m: JsonObject = {};
          if (Array.isArray(mentions.user_ids)) m.user_ids = mentions.user_ids.flatMap((u) => this.user(u) ?? []);
          put(m, 'room', bool(mentions.room));
          out['m.mentions'] = m;
        }
        return out;
      }
      case 'm.reaction': {
        const rel = asObject(c['m.relates_to']);
        const target = this.eventId(rel?.event_id);
        if (!rel || !target || rel.rel_type !== 'm.annotation' || typeof rel.key !== 'string') return undefined;
        out['m.relates_to'] = { rel_type: 'm.annotation', event_id: target, key: anonymiseReactionKey(rel.key) };
        return out;
      }
      case 'org.matrix.room.preview_urls':
        put(out, 'disable', bool(c.disable));
        return out;
      default:
        return undefined;
    }
  }

  private messageBody(c: Record<string, unknown>, out: JsonObject): void {
    put(out, 'msgtype', oneOf(ENUMS.msgtype, c.msgtype));
    put(out, 'body', text(c.body));
    const format = oneOf(ENUMS.format, c.format);
    if (format) {
      out.format = format;
      put(out, 'formatted_body', text(c.formatted_body));
    }
  }

  private mediaInfo(info: unknown, withDuration: boolean): JsonObject | undefined {
    const i = asObject(info);
    if (!i) return undefined;
    const out: JsonObject = {};
    put(out, 'h', num(i.h));
    put(out, 'w', num(i.w));
    put(out, 'size', num(i.size));
    if (withDuration) put(out, 'duration', num(i.duration));
    put(out, 'mimetype', oneOf(ENUMS.mimetype, i.mimetype));
    return nonEmpty(out);
  }

  /** Replies, edits, threads, references: kept with the anonymised target, removed when it is not in the snapshot. */
  private relation(rel: unknown): JsonObject | undefined {
    const r = asObject(rel);
    if (!r) return undefined;
    const out: JsonObject = {};
    const relType = oneOf(ENUMS.rel_type, r.rel_type);
    if (r.event_id !== undefined || relType) {
      const target = this.eventId(r.event_id);
      if (!relType || !target) {
        this.stats.relations_removed += 1;
        return undefined;
      }
      out.rel_type = relType;
      out.event_id = target;
      put(out, 'is_falling_back', bool(r.is_falling_back));
    }
    const reply = asObject(r['m.in_reply_to']);
    if (reply) {
      const target = this.eventId(reply.event_id);
      if (target) out['m.in_reply_to'] = { event_id: target };
      else this.stats.relations_removed += 1;
    }
    return nonEmpty(out);
  }

  /** An ACL entry: wildcards stay (they say nothing), the server part becomes its placeholder. */
  private aclEntry(pattern: string): string {
    const prefix = /^[*?.]*/.exec(pattern)![0];
    if (prefix.length === pattern.length) return pattern;
    const rest = pattern.slice(prefix.length);
    return prefix + (rest === this.ownServer ? ANON_SERVER : this.server(rest));
  }
}

/** What a reaction or redaction points at, in any room version (top-level or content `redacts`). */
function relationTarget(e: RawEvent): string | undefined {
  const content = asObject(e.raw.content);
  if (e.type === 'm.reaction') {
    const rel = asObject(content?.['m.relates_to']);
    return rel?.rel_type === 'm.annotation' && typeof rel.key === 'string' ? asString(rel.event_id) : undefined;
  }
  return asString(content?.redacts) ?? asString(e.raw.redacts);
}

/** Anonymises every joined room of a /sync answer (the job does the same room by room, with progress). */
export function anonymiseSync(sync: unknown, opts: { subject: string; serverName: string }): { snapshot: AnonSnapshot; anonymiser: Anonymiser; failed: { room: string; error: string }[] } {
  const anonymiser = new Anonymiser(opts);
  const rooms = joinedRooms(sync);
  anonymiser.reserveRooms(rooms.map(([id]) => id));
  const failed: { room: string; error: string }[] = [];
  for (const [id, data] of rooms) {
    const r = anonymiser.anonymiseRoom(id, data);
    if (!r.ok) failed.push({ room: anonymiser.roomLabel(id)!, error: r.error.human });
  }
  const accountData = asObject(asObject(sync)?.account_data)?.events;
  return { snapshot: anonymiser.snapshot(accountData), anonymiser, failed };
}
