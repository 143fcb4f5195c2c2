import { appendFileSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ArchiveAnnotations, ArchiveLine, ArchivedRoom } from '../../src/archive/archive-line.ts';
import type { AppendedFile } from '../../src/archive/views-hook.ts';

export const DAY1 = Date.UTC(2026, 10, 28, 9, 0, 0);
export const DAY2 = Date.UTC(2026, 10, 29, 9, 0, 0);
export const DAY3 = Date.UTC(2026, 10, 30, 9, 0, 0);
export const MINUTE = 60_000;

/** Builds federation-format events for one room and appends them to its day files the way the archive job does. */
export class RoomFixture {
  readonly room: ArchivedRoom;
  private readonly out: string;
  private depth = 0;
  private counter = 0;

  constructor(out: string, roomId: string, roomVersion = '10') {
    this.out = out;
    this.room = { roomId, roomVersion, dir: join(out, 'rooms', encodeURIComponent(roomId)) };
    mkdirSync(this.room.dir, { recursive: true, mode: 0o700 });
    writeFileSync(join(this.room.dir, 'room.json'), `${JSON.stringify({ format: 'steward.archive-room/1', room_id: roomId, room_version: roomVersion })}\n`, { mode: 0o600 });
  }

  event(type: string, sender: string, content: Record<string, unknown>, ts: number, extra: { stateKey?: string; redacts?: string; steward?: ArchiveAnnotations; id?: string } = {}): ArchiveLine {
    this.depth++;
    const event: Record<string, unknown> = {
      auth_events: [],
      prev_events: [],
      content,
      depth: this.depth,
      hashes: { sha256: 'x' },
      origin: sender.split(':').slice(1).join(':'),
      origin_server_ts: ts,
      room_id: this.room.roomId,
      sender,
      signatures: {},
      type,
      unsigned: {},
    };
    if (extra.stateKey !== undefined) event.state_key = extra.stateKey;
    if (extra.redacts !== undefined) event.redacts = extra.redacts;
    const line: ArchiveLine = { event_id: extra.id ?? `$e${++this.counter}-${this.room.roomId.slice(1, 5)}`, room_id: this.room.roomId, origin_server_ts: ts, event, ...(extra.steward ? { steward: extra.steward } : {}) };
    return line;
  }

  text(sender: string, body: string, ts: number, more: Record<string, unknown> = {}): ArchiveLine {
    return this.event('m.room.message', sender, { msgtype: 'm.text', body, ...more }, ts);
  }

  member(user: string, membership: string, displayname: string | undefined, ts: number, sender = user): ArchiveLine {
    return this.event('m.room.member', sender, { membership, ...(displayname ? { displayname } : {}) }, ts, { stateKey: user });
  }

  edit(target: ArchiveLine, sender: string, body: string, ts: number): ArchiveLine {
    return this.event('m.room.message', sender, { msgtype: 'm.text', body: `* ${body}`, 'm.new_content': { msgtype: 'm.text', body }, 'm.relates_to': { rel_type: 'm.replace', event_id: target.event_id } }, ts);
  }

  reply(target: ArchiveLine, sender: string, body: string, ts: number): ArchiveLine {
    return this.text(sender, `> <${String(target.event.sender)}> quoted\n\n${body}`, ts, { 'm.relates_to': { 'm.in_reply_to': { event_id: target.event_id } } });
  }

  threadReply(root: ArchiveLine, sender: string, body: string, ts: number): ArchiveLine {
    return this.text(sender, body, ts, { 'm.relates_to': { rel_type: 'm.thread', event_id: root.event_id, is_falling_back: true, 'm.in_reply_to': { event_id: root.event_id } } });
  }

  react(target: ArchiveLine, sender: string, key: string, ts: number): ArchiveLine {
    return this.event('m.reaction', sender, { 'm.relates_to': { rel_type: 'm.annotation', event_id: target.event_id, key } }, ts);
  }

  redact(target: ArchiveLine, sender: string, ts: number, steward?: ArchiveAnnotations): ArchiveLine {
    return this.event('m.room.redaction', sender, {}, ts, { redacts: target.event_id, ...(steward ? { steward } : {}) });
  }

  /** Appends lines to their day files (UTC day of origin_server_ts), as the job does. */
  append(...lines: ArchiveLine[]): ArchiveLine[] {
    for (const line of lines) {
      const day = new Date(line.origin_server_ts).toISOString().slice(0, 10);
      const dir = join(this.room.dir, day.slice(0, 4), day.slice(5, 7));
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      appendFileSync(join(dir, `${day}.jsonl`), `${JSON.stringify(line)}\n`, { mode: 0o600 });
    }
    return lines;
  }

  /** Appends a page as the job does and says where it went: each day file's length before and after. */
  appendPage(...lines: ArchiveLine[]): { lines: ArchiveLine[]; files: AppendedFile[] } {
    const sizeOf = (day: string): number => {
      try {
        return statSync(join(this.room.dir, day.slice(0, 4), day.slice(5, 7), `${day}.jsonl`)).size;
      } catch {
        return 0;
      }
    };
    const days = [...new Set(lines.map((l) => new Date(l.origin_server_ts).toISOString().slice(0, 10)))];
    const before = new Map(days.map((d) => [d, sizeOf(d)]));
    this.append(...lines);
    return { lines, files: days.map((day) => ({ day, from: before.get(day)!, to: sizeOf(day) })) };
  }

  mdPath(day: string): string {
    return join(this.room.dir, day.slice(0, 4), day.slice(5, 7), `${day}.md`);
  }

  get outDir(): string {
    return this.out;
  }
}
