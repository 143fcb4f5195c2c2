// Test doubles and watchers for linked accounts: a directory served on 127.0.0.1 whose answer per
// Matrix ID the test sets (a list, garbage, a dropped connection, a 500), and a /sync watcher
// that notices read receipts as soon as the homeserver shows them.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MatrixTestClient } from '../rig/client.ts';

export type DirectoryBehaviour = readonly string[] | 'garbage' | 'not-a-list' | 'drop' | 'status500';

export interface TestDirectory {
  readonly port: number;
  /** URL template for linked_accounts.directory.url. */
  readonly urlTemplate: string;
  /** What the directory answers for one Matrix ID; unknown IDs get 404 ("no links"). */
  set(userId: string, behaviour: DirectoryBehaviour): void;
  /** Links these IDs to each other: each one's answer is the whole list (itself included). */
  link(...userIds: string[]): void;
  /** How many requests asked about this ID. */
  requestsFor(userId: string): number;
  /** Stops listening (connections refused) until resume(). */
  down(): Promise<void>;
  resume(): Promise<void>;
  close(): Promise<void>;
}

export async function startTestDirectory(): Promise<TestDirectory> {
  const behaviours = new Map<string, DirectoryBehaviour>();
  const counts = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const match = /^\/links\/([^/?]+)$/.exec(req.url ?? '');
    if (!match) {
      res.writeHead(400).end();
      return;
    }
    const userId = decodeURIComponent(match[1]!);
    counts.set(userId, (counts.get(userId) ?? 0) + 1);
    const b = behaviours.get(userId);
    if (b === undefined) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"unknown"}');
    } else if (b === 'drop') {
      req.socket.destroy();
    } else if (b === 'status500') {
      res.writeHead(500).end('oops');
    } else if (b === 'garbage') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('<html>definitely not json');
    } else if (b === 'not-a-list') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ linked: [userId] }));
    } else {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(b));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  server.unref();
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    urlTemplate: `http://127.0.0.1:${port}/links/{mxid}`,
    set: (userId, behaviour) => behaviours.set(userId, behaviour),
    link: (...userIds) => {
      for (const u of userIds) behaviours.set(u, [...userIds]);
    },
    requestsFor: (userId) => counts.get(userId) ?? 0,
    down: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
    resume: () => new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => resolve());
    }),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

export interface SeenReceipt {
  readonly userId: string;
  readonly eventId: string;
  readonly type: string;
  readonly threadId: string | undefined;
  /** performance.now() when this client's /sync first showed it. */
  readonly seenAt: number;
}

/**
 * Long-polls /sync for one client and records every read receipt in one room as it appears.
 * Waits resolve as soon as a matching receipt has been seen (before or after the wait started).
 */
export class ReceiptWatcher {
  readonly client: MatrixTestClient;
  readonly roomId: string;
  readonly seen: SeenReceipt[] = [];
  private since: string | undefined;
  private running = true;
  private loop: Promise<void> | undefined;
  private wake: (() => void)[] = [];
  private lastError: unknown;

  constructor(client: MatrixTestClient, roomId: string) {
    this.client = client;
    this.roomId = roomId;
  }

  /** Starts from now: only receipts that arrive after start() count (unless `fromStart`). */
  async start(fromStart = false): Promise<void> {
    const first = await this.client.sync({ filter: this.filter() });
    this.since = first.next_batch;
    if (fromStart) this.take(first);
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop?.catch(() => undefined);
  }

  private filter(): object {
    return {
      room: { rooms: [this.roomId], timeline: { limit: 1 }, state: { types: [] }, ephemeral: { types: ['m.receipt'] }, account_data: { types: [] } },
      presence: { types: [] },
      account_data: { types: [] },
    };
  }

  private async run(): Promise<void> {
    while (this.running) {
      try {
        const res = await this.client.sync({ since: this.since, timeoutMs: 2000, filter: this.filter() });
        this.since = res.next_batch;
        this.take(res);
      } catch (err) {
        this.lastError = err;
        await sleep(200);
      }
    }
  }

  private take(res: any): void {
    const now = performance.now();
    const room = res?.rooms?.join?.[this.roomId];
    let added = false;
    for (const ev of room?.ephemeral?.events ?? []) {
      if (ev.type !== 'm.receipt') continue;
      for (const [eventId, byType] of Object.entries<any>(ev.content ?? {})) {
        for (const [type, users] of Object.entries<any>(byType ?? {})) {
          for (const [userId, data] of Object.entries<any>(users ?? {})) {
            this.seen.push({ userId, eventId, type, threadId: typeof data?.thread_id === 'string' ? data.thread_id : undefined, seenAt: now });
            added = true;
          }
        }
      }
    }
    if (added) {
      const waiting = this.wake;
      this.wake = [];
      for (const w of waiting) w();
    }
  }

  find(userId: string, eventId: string, type = 'm.read'): SeenReceipt | undefined {
    return this.seen.find((r) => r.userId === userId && r.eventId === eventId && r.type === type);
  }

  async waitFor(userId: string, eventId: string, opts: { type?: string; timeoutMs?: number } = {}): Promise<SeenReceipt> {
    const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
    for (;;) {
      const hit = this.find(userId, eventId, opts.type);
      if (hit) return hit;
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        throw new Error(`${this.client.userId}: no ${opts.type ?? 'm.read'} receipt of ${userId} at ${eventId} within ${opts.timeoutMs ?? 20_000} ms (${this.seen.length} receipts seen; last error: ${String(this.lastError ?? 'none')})`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(remaining, 500));
        this.wake.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }
}

/** The user's current receipts in a room, as an initial /sync shows them. */
export async function currentReceipts(client: MatrixTestClient, roomId: string, userId: string): Promise<{ eventId: string; type: string; threadId: string | undefined }[]> {
  const res = await client.sync({
    filter: {
      room: { rooms: [roomId], timeline: { limit: 1 }, state: { types: [] }, ephemeral: { types: ['m.receipt'] }, account_data: { types: [] } },
      presence: { types: [] },
      account_data: { types: [] },
    },
  });
  const out: { eventId: string; type: string; threadId: string | undefined }[] = [];
  for (const ev of res?.rooms?.join?.[roomId]?.ephemeral?.events ?? []) {
    for (const [eventId, byType] of Object.entries<any>(ev.content ?? {})) {
      for (const [type, users] of Object.entries<any>(byType ?? {})) {
        const data = users?.[userId];
        if (data) out.push({ eventId, type, threadId: typeof data.thread_id === 'string' ? data.thread_id : undefined });
      }
    }
  }
  return out;
}

/** Polls `check` until it answers something other than undefined/false, or fails after `timeoutMs`. */
export async function eventually<T>(what: string, check: () => Promise<T | undefined | false>, timeoutMs = 30_000, intervalMs = 250): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}`);
    await sleep(intervalMs);
  }
}
