// Shared by the archive end-to-end tests: seeding with appservice timestamps, reading an archive back.
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MatrixTestClient } from '../rig/client.ts';
import type { SynapseInstance } from '../rig/synapse.ts';
import { redactEvent, roomVersion } from '../../src/federation/index.ts';

export const DAY_MS = 86_400_000;

/** Sends as `userId` through the appservice with a massaged timestamp (`?ts=`). */
export class TimedSender {
  private readonly as: MatrixTestClient;
  private txn = 0;
  constructor(clientUrl: string, asToken: string) {
    this.as = new MatrixTestClient(clientUrl, '', asToken);
  }

  async send(roomId: string, userId: string, ts: number, type: string, content: object): Promise<string> {
    const txn = `archive-${Date.now()}-${this.txn++}`;
    const res = await this.as.request<{ event_id: string }>('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/send/${encodeURIComponent(type)}/${txn}`, content, { user_id: userId, ts: String(ts) });
    return res.event_id;
  }

  text(roomId: string, userId: string, ts: number, body: string): Promise<string> {
    return this.send(roomId, userId, ts, 'm.room.message', { msgtype: 'm.text', body });
  }

  async redact(roomId: string, userId: string, ts: number, eventId: string, reason: string): Promise<string> {
    const res = await this.as.request<{ event_id: string }>('PUT', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/redact/${encodeURIComponent(eventId)}/r${this.txn++}`, { reason }, { user_id: userId, ts: String(ts) });
    return res.event_id;
  }

  async upload(userId: string, bytes: Uint8Array, contentType: string): Promise<string> {
    const url = new URL(`${this.as.baseUrl}/_matrix/media/v3/upload`);
    url.searchParams.set('user_id', userId);
    url.searchParams.set('filename', 'pixel.png');
    const token = this.as.accessToken;
    const res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': contentType }, body: bytes });
    assert.equal(res.status, 200, await res.clone().text());
    return ((await res.json()) as { content_uri: string }).content_uri;
  }
}

/** Every room's lines, by room id, then by day file (relative path) in file order. */
export async function readArchive(out: string): Promise<Map<string, Map<string, any[]>>> {
  const rooms = new Map<string, Map<string, any[]>>();
  const roomsDir = path.join(out, 'rooms');
  for (const name of await readdir(roomsDir).catch(() => [] as string[])) {
    const doc = JSON.parse(await readFile(path.join(roomsDir, name, 'room.json'), 'utf8'));
    const files = new Map<string, any[]>();
    for (const rel of await jsonlFiles(path.join(roomsDir, name))) {
      const text = await readFile(path.join(roomsDir, name, rel), 'utf8');
      assert.ok(text.endsWith('\n'), `${rel} ends with a whole line`);
      files.set(rel, text.slice(0, -1).split('\n').map((l) => JSON.parse(l)));
    }
    rooms.set(doc.room_id, files);
  }
  return rooms;
}

export async function jsonlFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.filter((e) => e.endsWith('.jsonl')).sort();
}

/** Every file of the archive with its bytes and mtime, for "a re-run changes nothing". */
export async function snapshotFiles(out: string, skip: (rel: string) => boolean = () => false): Promise<Map<string, { text: string; mtimeMs: number; mode: number }>> {
  const files = new Map<string, { text: string; mtimeMs: number; mode: number }>();
  for (const rel of (await readdir(out, { recursive: true })).sort()) {
    if (skip(rel)) continue;
    const full = path.join(out, rel);
    const st = await stat(full);
    if (!st.isFile()) continue;
    files.set(rel, { text: await readFile(full, 'utf8'), mtimeMs: st.mtimeMs, mode: st.mode & 0o777 });
  }
  return files;
}

/** The admin API's event ids of a room, oldest first. */
export async function adminEventIds(admin: MatrixTestClient, roomId: string): Promise<string[]> {
  const ids: string[] = [];
  let from: string | undefined;
  for (;;) {
    const page = await admin.request('GET', `/_synapse/admin/v1/rooms/${encodeURIComponent(roomId)}/messages`, undefined, { dir: 'f', limit: '1000', ...(from ? { from } : {}) });
    for (const e of page.chunk) ids.push(e.event_id);
    if (!page.end || page.chunk.length === 0) return ids;
    from = page.end;
  }
}

/**
 * What Synapse's _censor_redactions does once redaction_retention_period has passed (it runs
 * every 5 minutes, too slow for a test): the stored event JSON is replaced by its redacted form.
 * Synapse must be stopped; its caches are gone when it starts again.
 */
export function censorInSynapse(hs: SynapseInstance, eventId: string, version: string): void {
  const db = new Database(hs.dbPath);
  try {
    const row = db.prepare('SELECT json FROM event_json WHERE event_id = ?').get(eventId) as { json: string } | undefined;
    assert.ok(row, `${eventId} is in Synapse's event_json`);
    const v = roomVersion(version);
    assert.ok(v.ok);
    const pruned = redactEvent(JSON.parse(row.json), v.value);
    db.prepare('UPDATE event_json SET json = ? WHERE event_id = ?').run(JSON.stringify(pruned), eventId);
    db.prepare('UPDATE redactions SET have_censored = 1 WHERE redacts = ?').run(eventId);
  } finally {
    db.close();
  }
}

/**
 * A forwarding proxy in front of a real homeserver that answers `fail(path)` requests with a 502
 * itself: a homeserver that cannot serve one endpoint for a while, which a healthy Synapse never does.
 */
export async function flakyProxy(target: string, fail: (path: string) => boolean): Promise<{ url: string; close: () => Promise<void> }> {
  const server = createServer((req, res) => {
    if (fail(req.url ?? '')) {
      res.writeHead(502, { 'content-type': 'application/json' }).end(JSON.stringify({ errcode: 'M_UNKNOWN', error: 'proxy: upstream unavailable' }));
      return;
    }
    const upstream = httpRequest(new URL(req.url ?? '/', target), { method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(() => resolve())) };
}
