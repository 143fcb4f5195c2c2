import type { Rich } from '../admin-room/messenger.ts';
import type { Logger } from '../log.ts';
import { escapeHtml } from '../util/html.ts';
import { LostRoomAnnouncer } from './announcer.ts';
import { SightingCorrelator, type Sighting } from './log-parser.ts';
import { CommandSource, FileFollower, StdinSource, type LogSource, type SourceCallbacks, type SourceState } from './log-sources.ts';
import type { LogSourceStore, LostRoomStore } from './lost-rooms.ts';
import { sourceName, type LogSourceConfig, type RecoveryConfig } from './recovery-config.ts';

export interface DetectionOptions {
  readonly config: RecoveryConfig;
  /** Our own server name: never recorded as a sender. */
  readonly serverName: string;
  readonly rooms: LostRoomStore;
  readonly sources: LogSourceStore;
  readonly log: Logger;
  /** A notice in the status room. */
  notify(message: Rich): Promise<void>;
  /** Replaces the real sources (tests). */
  readonly makeSource?: (config: LogSourceConfig, name: string, cb: SourceCallbacks) => LogSource;
  /** An `Ignoring PDU` line waits this long for the access-log line naming its sender. */
  readonly originWaitMs?: number;
}

interface Follow {
  readonly name: string;
  readonly source: LogSource;
  readonly correlator: SightingCorrelator;
  state: SourceState;
  detail: string | null;
  /** Whether the admin has been told of the current failure. */
  told: boolean;
}

const FLUSH_MS = 500;
const STATUS_SAVE_MS = 5_000;

/**
 * Lost-room detection while the service runs: follows every configured log source, turns lines
 * into sightings, records them (batched, one transaction per flush) and announces new rooms.
 * A source that fails is reported once, retried by the source itself, and never stops the others.
 */
export class LostRoomDetection {
  private readonly opts: DetectionOptions;
  private readonly follows: Follow[] = [];
  private readonly announcer: LostRoomAnnouncer;
  private buffer: Sighting[] = [];
  private flushTimer: NodeJS.Timeout | null = null;
  private statusTimer: NodeJS.Timeout | null = null;
  private notices: Promise<void> = Promise.resolve();

  constructor(opts: DetectionOptions) {
    this.opts = opts;
    this.announcer = new LostRoomAnnouncer({
      store: opts.rooms,
      intervalMs: opts.config.announceIntervalSeconds * 1000,
      notify: opts.notify,
      log: opts.log.child({ module: 'lost-rooms' }),
    });
  }

  start(): void {
    for (const config of this.opts.config.logSources) {
      const name = sourceName(config);
      const correlator = new SightingCorrelator(config.format, { maxPendingMs: this.opts.originWaitMs ?? 10_000 });
      const follow: Follow = { name, source: undefined as unknown as LogSource, correlator, state: 'starting', detail: null, told: false };
      const cb: SourceCallbacks = {
        onLines: (lines) => {
          const now = Date.now();
          // Following live: a line is as old as its arrival (the log's clock and zone may differ from ours).
          for (const line of lines) for (const s of correlator.feed(line, now)) this.buffer.push({ ...s, ts: now });
        },
        onState: (state, detail) => this.sourceState(follow, state, detail),
      };
      const source = this.opts.makeSource ? this.opts.makeSource(config, name, cb) : this.makeSource(config, name, cb);
      (follow as { source: LogSource }).source = source;
      this.follows.push(follow);
    }
    for (const f of this.follows) f.source.start();
    this.flushTimer = setInterval(() => this.flush(), FLUSH_MS);
    this.statusTimer = setInterval(() => this.saveStatuses(), STATUS_SAVE_MS);
    this.announcer.start();
    if (this.follows.length > 0) this.opts.log.info({ sources: this.follows.map((f) => f.name) }, 'following Synapse logs for lost rooms');
  }

  async stop(): Promise<void> {
    if (this.flushTimer) clearInterval(this.flushTimer);
    if (this.statusTimer) clearInterval(this.statusTimer);
    await Promise.all(this.follows.map((f) => f.source.stop()));
    for (const f of this.follows) this.buffer.push(...f.correlator.flush().map((s) => ({ ...s, ts: s.ts ?? Date.now() })));
    this.flush();
    this.saveStatuses();
    await this.announcer.stop();
    await this.notices;
  }

  /** Records what has been seen since the last flush; announces anything new. */
  flush(): void {
    const now = Date.now();
    for (const f of this.follows) for (const s of f.correlator.expire(now)) this.buffer.push({ ...s, ts: now });
    if (this.buffer.length === 0) return;
    const batch = this.buffer;
    this.buffer = [];
    const { newRooms, lostAgain } = this.opts.rooms.record(batch.map((s) => ({ roomId: s.roomId, server: s.server, ts: s.ts ?? now })), this.opts.serverName, now);
    this.saveStatuses(); // so !lost list counts what was just recorded
    if (newRooms.length || lostAgain.length) {
      this.opts.log.warn({ newRooms, lostAgain }, 'rooms this server is not in are sending it events');
      this.announcer.poke();
    }
  }

  private makeSource(config: LogSourceConfig, name: string, cb: SourceCallbacks): LogSource {
    switch (config.kind) {
      case 'file':
        return new FileFollower({
          name, path: config.path, startAt: config.startAt, pollMs: this.opts.config.pollIntervalMs,
          saved: this.opts.sources.position(name),
          savePosition: (fileId, offset) => this.opts.sources.savePosition(name, fileId, offset),
        }, cb);
      case 'command':
        return new CommandSource({ name, argv: config.argv }, cb);
      case 'stdin':
        return new StdinSource(cb);
    }
  }

  private sourceState(f: Follow, state: SourceState, detail: string | null): void {
    const was = f.state;
    f.state = state;
    f.detail = detail;
    const log = this.opts.log.child({ module: 'log-source', source: f.name });
    if (state === 'failing' || state === 'ended') {
      if (!f.told) {
        f.told = true;
        log.warn({ detail }, 'log source failing');
        const text = `⚠️ Log source ${f.name} ${state === 'ended' ? 'ended' : 'is failing'}: ${detail}. ${state === 'ended' ? '' : 'Steward keeps retrying; you will hear when it works again.'}`.trim();
        this.say({ text, html: `⚠️ Log source <code>${escapeHtml(f.name)}</code> ${state === 'ended' ? 'ended' : 'is failing'}: ${escapeHtml(detail ?? '')}. ${state === 'ended' ? '' : 'Steward keeps retrying; you will hear when it works again.'}` });
      } else {
        log.debug({ detail }, 'log source still failing');
      }
    } else if (state === 'following') {
      if (f.told && (was === 'failing' || was === 'starting')) {
        log.info('log source works again');
        this.say({ text: `✅ Log source ${f.name} works again.`, html: `✅ Log source <code>${escapeHtml(f.name)}</code> works again.` });
      }
      f.told = false;
    }
    this.saveStatus(f);
  }

  private say(message: Rich): void {
    this.notices = this.notices.then(() => this.opts.notify(message)).catch((err: unknown) => this.opts.log.warn({ err }, 'could not send a log source notice'));
  }

  private saveStatus(f: Follow): void {
    const c = f.correlator.counters;
    this.opts.sources.saveStatus(f.name, f.state, f.detail, { lines: c.lines, unparsed: c.unparsed, sightings: c.sightings });
  }

  private saveStatuses(): void {
    for (const f of this.follows) this.saveStatus(f);
  }
}
