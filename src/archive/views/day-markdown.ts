import { join, relative, sep } from 'node:path';
import type { IndexDb } from './archive-index.ts';

/** One row of the events table, as the renderer reads it. */
interface Row {
  readonly event_id: string;
  readonly room_id: string;
  readonly sender: string;
  readonly ts: number;
  readonly depth: number;
  readonly day: string;
  readonly type: string;
  readonly state_key: string | null;
  readonly relation: string | null;
  readonly relates_to: string | null;
  readonly reply_to: string | null;
  readonly thread_root: string | null;
  readonly redacts: string | null;
  readonly content: string;
  readonly original: string | null;
  readonly redacted: number;
  readonly original_missing: string | null;
}

type Json = Record<string, unknown>;

interface MemberRow {
  readonly depth: number;
  readonly ts: number;
  readonly displayname: string | null;
  readonly membership: string | null;
}

interface DayCache {
  /** The day's own events: their relations and threads are in the maps below. */
  readonly ids: ReadonlySet<string>;
  /** `relation|target` → events, in room-file order. */
  readonly related: ReadonlyMap<string, Row[]>;
  /** Events whose first redaction (if any) is in `redactions`. */
  readonly redactionScope: ReadonlySet<string>;
  readonly redactions: ReadonlyMap<string, Row>;
  readonly threads: ReadonlyMap<string, Row[]>;
  /** Per user, their member events in room order, read on first use. */
  readonly members: Map<string, MemberRow[]>;
}

const ORDER = 'ORDER BY ts, depth, event_id';
const MEDIA_TYPES: Record<string, string> = { 'm.image': 'image', 'm.file': 'file', 'm.video': 'video', 'm.audio': 'audio' };

/**
 * Renders one day of one room as markdown, from the index alone: the same index gives the same
 * bytes (every list is ordered by timestamp, depth and event id), so a re-run rewrites nothing.
 * Times are UTC. Edits show the final text, replies quote their target, thread replies sit under
 * their root, reactions are counted, deleted events say so and show the original when one was kept.
 */
export class DayRenderer {
  private readonly db: IndexDb;
  private readonly mediaRoot: string;
  private readonly q;

  constructor(db: IndexDb, mediaRoot: string) {
    this.db = db;
    this.mediaRoot = mediaRoot;
    this.q = {
      day: db.prepare<[string, number, number], Row>(`SELECT * FROM events WHERE room_id = ? AND ts >= ? AND ts < ? ${ORDER}`),
      byId: db.prepare<[string, string], Row>('SELECT * FROM events WHERE +room_id = ? AND event_id = ?'),
      related: db.prepare<[string, string, string], Row>(`SELECT * FROM events WHERE +room_id = ? AND relates_to = ? AND relation = ? ${ORDER}`),
      redactions: db.prepare<[string, string], Row>(`SELECT * FROM events WHERE +room_id = ? AND redacts = ? AND +type = 'm.room.redaction' ${ORDER}`),
      thread: db.prepare<[string, string], Row>(`SELECT * FROM events WHERE +room_id = ? AND thread_root = ? ${ORDER}`),
      // Room order is (depth, ts), as docs/dump-format.md says: timestamps can be set by appservices or lie.
      member: db.prepare<[string, string, number, number, number], { displayname: string | null; membership: string | null }>(
        'SELECT displayname, membership FROM members WHERE room_id = ? AND user_id = ? AND depth <= ? AND NOT (depth = ? AND ts > ?) ORDER BY depth DESC, ts DESC, event_id DESC LIMIT 1',
      ),
      memberBefore: db.prepare<[string, string, number, number, number, string], { displayname: string | null; membership: string | null }>(
        'SELECT displayname, membership FROM members WHERE room_id = ? AND user_id = ? AND depth <= ? AND NOT (depth = ? AND ts > ?) AND event_id != ? ORDER BY depth DESC, ts DESC, event_id DESC LIMIT 1',
      ),
      roomName: db.prepare<[string, number], { content: string }>(
        "SELECT content FROM events WHERE room_id = ? AND type = 'm.room.name' AND state_key = '' AND ts < ? ORDER BY ts DESC, depth DESC, event_id DESC LIMIT 1",
      ),
      media: db.prepare<[string], { sha256: string; encrypted: number }>('SELECT sha256, encrypted FROM media WHERE mxc = ?'),
      // A day's relations, redactions and thread replies in one query each, rather than one per event.
      dayRelated: db.prepare<[string, string, number, number], Row>(
        `SELECT * FROM events WHERE +room_id = ? AND relates_to IN (SELECT event_id FROM events WHERE room_id = ? AND ts >= ? AND ts < ?) ${ORDER}`,
      ),
      dayRedactions: db.prepare<[string, string, number, number], Row>(
        `SELECT * FROM events WHERE +room_id = ? AND +type = 'm.room.redaction' AND redacts IN (SELECT event_id FROM events WHERE room_id = ? AND ts >= ? AND ts < ?) ${ORDER}`,
      ),
      dayThreads: db.prepare<[string, string, number, number], Row>(
        `SELECT * FROM events WHERE +room_id = ? AND thread_root IN (SELECT event_id FROM events WHERE room_id = ? AND ts >= ? AND ts < ?) ${ORDER}`,
      ),
      memberHistory: db.prepare<[string, string], MemberRow>(
        'SELECT depth, ts, displayname, membership FROM members WHERE room_id = ? AND user_id = ? ORDER BY depth, ts, event_id',
      ),
    };
  }

  /** What the day being rendered needs, read up front; events outside it fall back to a query each. */
  private cache: DayCache | null = null;

  private related(row: Row, relation: string): Row[] {
    const c = this.cache;
    if (c && c.ids.has(row.event_id)) return c.related.get(`${relation}|${row.event_id}`) ?? [];
    return this.q.related.all(row.room_id, row.event_id, relation);
  }

  private redactionOf(roomId: string, eventId: string): Row | undefined {
    const c = this.cache;
    if (c && c.redactionScope.has(eventId)) return c.redactions.get(eventId);
    return this.q.redactions.get(roomId, eventId);
  }

  private threadOf(row: Row): Row[] {
    const c = this.cache;
    if (c && c.ids.has(row.event_id)) return c.threads.get(row.event_id) ?? [];
    return this.q.thread.all(row.room_id, row.event_id);
  }

  private load(roomId: string, [start, end]: readonly [number, number], rows: readonly Row[]): DayCache {
    const group = <K>(list: Row[], key: (r: Row) => K): Map<K, Row[]> => {
      const m = new Map<K, Row[]>();
      for (const r of list) {
        const k = key(r);
        const l = m.get(k);
        if (l) l.push(r);
        else m.set(k, [r]);
      }
      return m;
    };
    const related = this.q.dayRelated.all(roomId, roomId, start, end);
    const redactionScope = new Set(rows.map((r) => r.event_id));
    const redactions = new Map<string, Row>();
    const addRedactions = (list: Row[]): void => {
      for (const r of list) if (r.redacts !== null && !redactions.has(r.redacts)) redactions.set(r.redacts, r);
    };
    addRedactions(this.q.dayRedactions.all(roomId, roomId, start, end));
    // Edits and reactions are checked for deletion too; they may sit on other days.
    for (const r of related) {
      if (redactionScope.has(r.event_id)) continue;
      redactionScope.add(r.event_id);
      const red = this.q.redactions.get(roomId, r.event_id);
      if (red) redactions.set(r.event_id, red);
    }
    return {
      ids: new Set(rows.map((r) => r.event_id)),
      related: group(related, (r) => `${r.relation}|${r.relates_to}`),
      redactionScope,
      redactions,
      threads: group(this.q.dayThreads.all(roomId, roomId, start, end), (r) => r.thread_root!),
      members: new Map(),
    };
  }

  /** The markdown of `day` (YYYY-MM-DD) for a file in `mdDir`; null when the day holds no event. */
  render(roomId: string, day: string, mdDir: string): string | null {
    // A day is the range of timestamps of its UTC date: the room's time index finds it.
    const start = Date.parse(`${day}T00:00:00Z`);
    const range = [start, start + 86_400_000] as const;
    const rows = this.q.day.all(roomId, ...range);
    if (rows.length === 0) return null;
    this.cache = this.load(roomId, range, rows);
    try {
      return this.renderRows(roomId, day, mdDir, rows);
    } finally {
      this.cache = null;
    }
  }

  private renderRows(roomId: string, day: string, mdDir: string, rows: readonly Row[]): string {
    const dayEnd = Date.parse(`${day}T00:00:00Z`) + 86_400_000;
    const nameRow = this.q.roomName.get(roomId, dayEnd);
    const roomName = nameRow ? str(parse(nameRow.content).name) : null;
    const out: string[] = [`# ${roomName ? `${inline(roomName)} — ` : ''}${day}`, '', `Room \`${roomId}\` · times in UTC`, ''];
    for (const row of rows) {
      const pointer = this.pointer(row, day);
      if (pointer === 'hidden') continue;
      if (pointer !== null) {
        out.push(`- ${time(row.ts)} ${pointer}`);
        continue;
      }
      out.push(...this.item(row, day, mdDir, ''));
    }
    return `${out.join('\n')}\n`;
  }

  /**
   * Events shown under another event (edits, reactions, redactions, thread replies): hidden when
   * their target is on the same day, a one-line pointer to the target's day otherwise; null for
   * events shown as items of their own.
   */
  private pointer(row: Row, day: string): string | 'hidden' | null {
    const who = this.name(row);
    let kind: string | null = null;
    let targetId: string | null = null;
    if (row.type === 'm.room.redaction') {
      kind = 'deleted';
      targetId = row.redacts;
    } else if (row.relation === 'm.replace') {
      kind = 'edited';
      targetId = row.relates_to;
    } else if (row.relation === 'm.annotation') {
      kind = `reacted ${inline(str(obj(parse(row.content)['m.relates_to'])?.key) ?? '?')} to`;
      targetId = row.relates_to;
    } else if (row.thread_root !== null) {
      targetId = row.thread_root;
      const root = this.q.byId.get(row.room_id, targetId);
      if (!root) return null;
      return root.day === day ? 'hidden' : `**${who}** replied in a thread started on ${root.day} (shown there)`;
    }
    if (kind === null) return null;
    const target = targetId === null ? undefined : this.q.byId.get(row.room_id, targetId);
    if (!target) return `*${who} ${kind} an event that is not in the archive*`;
    // A thread reply is shown under its root, maybe on another day than its own.
    const shown = this.shownDay(target);
    return shown === day ? 'hidden' : `*${who} ${kind} a message of ${shown}*`;
  }

  private shownDay(row: Row): string {
    if (row.thread_root === null) return row.day;
    return this.q.byId.get(row.room_id, row.thread_root)?.day ?? row.day;
  }

  private item(row: Row, day: string, mdDir: string, indent: string): string[] {
    const stamp = row.day === day ? time(row.ts) : `${row.day} ${time(row.ts)}`;
    const who = this.name(row);
    const lines: string[] = [];
    const state = this.stateLine(row, who);
    if (state !== null) return [`${indent}- ${stamp} *${state}*`];
    const redaction = this.redactionOf(row.room_id, row.event_id);
    const deleted = redaction !== undefined || row.redacted === 1;
    const head = `${indent}- ${stamp} **${who}**`;
    const body: string[] = [];
    if (deleted) {
      const by = redaction && redaction.sender !== row.sender ? ` by ${this.name(redaction)}` : '';
      const kept = row.redacted === 1 ? (row.original ? parse(row.original) : redaction?.original ? parse(redaction.original) : null) : parse(row.content);
      if (kept) {
        body.push(`*(deleted${by}; original kept:)*`);
        body.push(...this.contentLines(row, kept, mdDir));
      } else {
        const missing = row.original_missing ?? redaction?.original_missing ?? null;
        body.push(`*(deleted${by}${missing === 'purged' ? '; the server had already purged the original' : missing === 'unavailable' ? '; the original could not be read' : ''})*`);
      }
    } else {
      const content = this.finalContent(row);
      const text = this.contentLines(row, content.content, mdDir);
      if (content.edited) text[text.length - 1] = `${text[text.length - 1]} *(edited)*`;
      body.push(...text);
    }
    const quote = row.reply_to ? this.quote(row.room_id, row.reply_to, mdDir) : null;
    if (quote !== null) {
      lines.push(`${head}:`, `${indent}  > ${quote}`, '');
      for (const l of body) lines.push(l === '' ? '' : `${indent}  ${l}`);
    } else {
      lines.push(`${head}: ${body[0] ?? ''}`);
      for (const l of body.slice(1)) lines.push(l === '' ? '' : `${indent}  ${l}`);
    }
    const reactions = this.reactions(row);
    if (reactions !== null) lines.push(`${indent}  - reactions: ${reactions}`);
    if (row.thread_root === null) {
      for (const reply of this.threadOf(row)) {
        if (reply.relation !== 'm.thread') continue;
        const sub = this.item(reply, day, mdDir, `${indent}  `);
        sub[0] = sub[0]!.replace(`${indent}  - `, `${indent}  - (thread) `);
        lines.push(...sub);
      }
    }
    return lines;
  }

  /** The text to show: the last edit by the original sender wins (edits by others are ignored, as clients do). */
  private finalContent(row: Row): { content: Json; edited: boolean } {
    const original = parse(row.content);
    let latest: Json | null = null;
    for (const edit of this.related(row, 'm.replace')) {
      if (edit.sender !== row.sender || edit.redacted === 1 || this.redactionOf(edit.room_id, edit.event_id)) continue;
      const next = obj(parse(edit.content)['m.new_content']);
      if (next) latest = next;
    }
    return latest ? { content: latest, edited: true } : { content: original, edited: false };
  }

  private contentLines(row: Row, c: Json, mdDir: string): string[] {
    if (row.type === 'm.room.encrypted') return ['*(encrypted)*'];
    const msgtype = str(c.msgtype);
    let body = str(c.body) ?? '';
    if (row.reply_to) body = stripReplyFallback(body);
    const mediaKind = row.type === 'm.sticker' ? 'sticker' : msgtype ? MEDIA_TYPES[msgtype] : undefined;
    if (mediaKind) {
      const file = obj(c.file);
      const mxc = str(c.url) ?? str(file?.url);
      const filename = str(c.filename) ?? body;
      const caption = str(c.filename) !== null && body !== '' && body !== str(c.filename) ? body : null;
      const link = mxc ? this.mediaLink(mxc, mdDir) : null;
      const label = `${mediaKind}: ${inline(filename || 'unnamed')}`;
      const shown = link ? `[${label}](${link.href})${link.encrypted ? ' *(encrypted, stored as ciphertext)*' : ''}` : `${label}${mxc ? ` (\`${mxc}\`, not downloaded)` : ''}`;
      return caption ? [shown, ...textLines(caption)] : [shown];
    }
    if (row.type !== 'm.room.message') {
      if (row.type === 'm.reaction') return [`reacted ${inline(str(obj(c['m.relates_to'])?.key) ?? '?')}`];
      return [`*sent an event of type \`${inline(row.type)}\`*`];
    }
    const lines = textLines(body);
    if (msgtype === 'm.notice') lines[0] = `*(notice)* ${lines[0]}`;
    if (msgtype === 'm.emote') lines[0] = `*(emote)* ${lines[0]}`;
    return lines;
  }

  private mediaLink(mxc: string, mdDir: string): { href: string; encrypted: boolean } | null {
    const m = this.q.media.get(mxc);
    if (!m) return null;
    const href = relative(mdDir, join(this.mediaRoot, m.sha256.slice(0, 2), m.sha256)).split(sep).join('/');
    return { href, encrypted: m.encrypted === 1 };
  }

  private quote(roomId: string, targetId: string, mdDir: string): string {
    const target = this.q.byId.get(roomId, targetId);
    if (!target) return '*(a message that is not in the archive)*';
    const deleted = target.redacted === 1 || this.redactionOf(roomId, targetId) !== undefined;
    const text = deleted ? '*(deleted)*' : firstLine(this.contentLines(target, this.finalContent(target).content, mdDir).join(' '));
    return `**${this.name(target)}**: ${text}`;
  }

  private reactions(row: Row): string | null {
    const byKey = new Map<string, string[]>();
    for (const r of this.related(row, 'm.annotation')) {
      if (r.redacted === 1 || this.redactionOf(r.room_id, r.event_id)) continue;
      const key = str(obj(parse(r.content)['m.relates_to'])?.key);
      if (key === null) continue;
      const who = byKey.get(key) ?? [];
      const name = this.name(r);
      // One person counts once per key, as clients show it.
      if (!who.includes(name)) who.push(name);
      byKey.set(key, who);
    }
    if (byKey.size === 0) return null;
    return [...byKey].map(([key, who]) => `${inline(key)} ${who.length} (${who.join(', ')})`).join(' · ');
  }

  private stateLine(row: Row, who: string): string | null {
    const c = parse(row.content);
    switch (row.type) {
      case 'm.room.create':
        return `${who} created the room`;
      case 'm.room.member': {
        const target = row.state_key ?? '';
        const before = this.q.memberBefore.get(row.room_id, target, row.depth, row.depth, row.ts, row.event_id);
        const membership = str(c.membership);
        const newName = str(c.displayname);
        const self = target === row.sender;
        // The name before this event: the event itself may change it.
        const subject = inline(before?.displayname?.trim() || target);
        if (membership === 'join' && before?.membership === 'join') {
          if ((before.displayname ?? null) !== (newName ?? null)) return newName ? `${subject} is now known as ${inline(newName)}` : `${subject} removed their display name`;
          return `${subject} changed their profile`;
        }
        if (membership === 'join') return `${newName ? inline(newName) : inline(target)} joined`;
        if (membership === 'invite') return `${who} invited ${inline(newName ?? target)}`;
        if (membership === 'ban') return `${who} banned ${subject}`;
        if (membership === 'knock') return `${inline(target)} asked to join`;
        if (membership === 'leave') return self ? `${subject} left` : `${who} removed ${subject}`;
        return `${who} changed the membership of ${inline(target)}`;
      }
      case 'm.room.name':
        return `${who} named the room “${inline(str(c.name) ?? '')}”`;
      case 'm.room.topic':
        return `${who} set the topic to “${inline(str(c.topic) ?? '')}”`;
      case 'm.room.avatar':
        return `${who} changed the room avatar`;
      case 'm.room.encryption':
        return `${who} turned on end-to-end encryption`;
    }
    if (row.state_key !== null) return `${who} set \`${inline(row.type)}\``;
    return null;
  }

  /** The member event in force at (depth, ts): the last one at or before it in room order. */
  private memberAt(roomId: string, userId: string, depth: number, ts: number): Pick<MemberRow, 'displayname' | 'membership'> | undefined {
    const c = this.cache;
    if (!c) return this.q.member.get(roomId, userId, depth, depth, ts);
    let history = c.members.get(userId);
    if (!history) {
      history = this.q.memberHistory.all(roomId, userId);
      c.members.set(userId, history);
    }
    // History is in (depth, ts) order, so the rows at or before the event are a prefix.
    let lo = 0;
    let hi = history.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const h = history[mid]!;
      if (h.depth < depth || (h.depth === depth && h.ts <= ts)) lo = mid + 1;
      else hi = mid;
    }
    return lo > 0 ? history[lo - 1] : undefined;
  }

  /** The sender's display name as it was when the event was sent (a member event before it in room order counts). */
  private name(row: Row): string {
    const m = this.memberAt(row.room_id, row.sender, row.depth, row.ts);
    const dn = m?.displayname?.trim();
    return inline(dn ? dn : row.sender);
  }
}

function parse(text: string): Json {
  try {
    const v: unknown = JSON.parse(text);
    return obj(v) ?? {};
  } catch {
    return {};
  }
}

function obj(v: unknown): Json | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Json) : null;
}

function str(v: unknown): string | null {
  return typeof v === 'string' ? v : null;
}

function time(ts: number): string {
  const d = new Date(ts);
  return Number.isFinite(d.getTime()) ? d.toISOString().slice(11, 19) : '??:??:??';
}

/** Text from the wire on one line, unable to open HTML or break the list around it. */
function inline(s: string): string {
  return s.replace(/[\r\n\t]+/g, ' ').replace(/[<>*_`[\]\\]/g, (c) => `\\${c}`);
}

/** A body's lines for a list item: HTML is escaped; markdown inside a message is left as written. */
function textLines(body: string): string[] {
  const lines = body.replace(/\r\n?/g, '\n').replace(/</g, '\\<').split('\n');
  while (lines.length > 1 && lines[lines.length - 1]!.trim() === '') lines.pop();
  return lines.map((l) => l.trimEnd());
}

function firstLine(s: string): string {
  const line = s.split('\n')[0] ?? '';
  return line.length > 120 ? `${line.slice(0, 119)}…` : line;
}

/** Older clients put the quoted message into the body ("> <@u> text" lines, then a blank line). */
function stripReplyFallback(body: string): string {
  const lines = body.split('\n');
  let i = 0;
  while (i < lines.length && lines[i]!.startsWith('>')) i++;
  if (i === 0) return body;
  if (i < lines.length && lines[i] === '') i++;
  return lines.slice(i).join('\n');
}
