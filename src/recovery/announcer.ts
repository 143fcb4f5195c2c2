import type { Rich } from '../admin-room/messenger.ts';
import type { Logger } from '../log.ts';
import { escapeHtml } from '../util/html.ts';
import type { LostRoom, LostRoomStore } from './lost-rooms.ts';

export interface AnnouncerOptions {
  readonly store: LostRoomStore;
  /** Least time between two announcements. */
  readonly intervalMs: number;
  /** After the first new room, wait this long for more (one transaction often names several). */
  readonly gatherMs?: number;
  /** Rooms named in one announcement; the rest are counted. */
  readonly maxListed?: number;
  notify(message: Rich): Promise<void>;
  readonly log: Logger;
}

/**
 * Tells the status room about lost rooms, grouped and throttled: at most one notice per
 * interval, naming every room not announced yet. Rooms recorded by another process (a terminal
 * `steward lost scan`) are picked up by a periodic check.
 */
export class LostRoomAnnouncer {
  private readonly opts: AnnouncerOptions;
  private lastTs = 0;
  private timer: NodeJS.Timeout | null = null;
  private sweep: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(opts: AnnouncerOptions) {
    this.opts = opts;
  }

  start(): void {
    this.sweep = setInterval(() => this.poke(), Math.max(this.opts.intervalMs, 5_000)).unref();
    this.poke();
  }

  /** Something new may be waiting: announce it as soon as the throttle allows. */
  poke(): void {
    if (this.stopped || this.timer) return;
    const now = Date.now();
    const at = Math.max(now + (this.opts.gatherMs ?? 2_000), this.lastTs + this.opts.intervalMs);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.running = this.running.then(() => this.announce());
    }, at - now);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.sweep) clearInterval(this.sweep);
    this.timer = null;
    await this.running;
  }

  private async announce(): Promise<void> {
    if (this.stopped) return;
    const total = this.opts.store.countUnannounced();
    if (total === 0) return;
    const max = this.opts.maxListed ?? 20;
    const rooms = this.opts.store.unannounced(total);
    this.lastTs = Date.now();
    try {
      await this.opts.notify(lostRoomsMessage(rooms, max));
      this.opts.store.markAnnounced(rooms.map((r) => r.roomId));
      this.opts.log.info({ rooms: rooms.length }, 'announced lost rooms');
    } catch (err) {
      this.opts.log.warn({ err }, 'could not announce lost rooms; will try again');
    }
  }
}

function plural(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}

function describeServers(room: LostRoom): string {
  if (room.servers.length === 0) return 'sender not known yet';
  const names = room.servers.slice(0, 3).map((s) => s.server);
  return `from ${names.join(', ')}${room.servers.length > 3 ? ` and ${room.servers.length - 3} more` : ''}`;
}

/** "3 rooms this server is no longer in are still sending us events: …" */
export function lostRoomsMessage(rooms: readonly LostRoom[], maxListed: number): Rich {
  const n = rooms.length;
  const head = `⚠️ ${plural(n, 'room', 'rooms')} this server is no longer in ${n === 1 ? 'is' : 'are'} still sending us events:`;
  const listed = rooms.slice(0, maxListed);
  const lines = listed.map((r) => {
    const again = r.recoveredTs !== null ? ' — again, after it was recovered' : '';
    return { text: `• ${r.roomId} — ${describeServers(r)} (${plural(r.sightings, 'time', 'times')})${again}`, html: `<li><code>${escapeHtml(r.roomId)}</code> — ${escapeHtml(describeServers(r))} (${plural(r.sightings, 'time', 'times')})${escapeHtml(again)}</li>` };
  });
  const more = n > listed.length ? `… and ${n - listed.length} more (!lost list shows them all).` : '';
  const tail = 'Plan the recovery with !rejoin all --dry-run, then run !rejoin all.';
  const text = [head, ...lines.map((l) => l.text), ...(more ? [more] : []), tail].join('\n');
  const html = `<p>${escapeHtml(head)}</p><ul>${lines.map((l) => l.html).join('')}</ul>${more ? `<p>${escapeHtml(more)}</p>` : ''}<p>Plan the recovery with <code>!rejoin all --dry-run</code>, then run <code>!rejoin all</code>.</p>`;
  return { text, html };
}
