// Seeding and reading helpers for the archive views' end-to-end test.
import assert from 'node:assert/strict';
import { readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { MatrixTestClient } from '../rig/client.ts';
import type { SynapseInstance } from '../rig/synapse.ts';
import { redactEvent, roomVersion } from '../../src/federation/index.ts';

export const DAY_MS = 86_400_000;
const enc = encodeURIComponent;

/** Acts as any local user through the appservice, with a chosen origin_server_ts (`?ts=`). */
export class AsUser {
  readonly client: MatrixTestClient;
  private txn = 0;
  constructor(clientUrl: string, asToken: string) {
    this.client = new MatrixTestClient(clientUrl, '', asToken);
  }

  async send(roomId: string, userId: string, ts: number, type: string, content: object): Promise<string> {
    const res = await this.client.request<{ event_id: string }>('PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/send/${enc(type)}/views-${Date.now()}-${this.txn++}`, content, { user_id: userId, ts: String(ts) });
    return res.event_id;
  }

  text(roomId: string, userId: string, ts: number, body: string): Promise<string> {
    return this.send(roomId, userId, ts, 'm.room.message', { msgtype: 'm.text', body });
  }

  async member(roomId: string, userId: string, ts: number, displayname: string): Promise<string> {
    const res = await this.client.request<{ event_id: string }>('PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/state/m.room.member/${enc(userId)}`, { membership: 'join', displayname }, { user_id: userId, ts: String(ts) });
    return res.event_id;
  }

  async redact(roomId: string, userId: string, ts: number, eventId: string): Promise<string> {
    const res = await this.client.request<{ event_id: string }>('PUT', `/_matrix/client/v3/rooms/${enc(roomId)}/redact/${enc(eventId)}/views-r${this.txn++}`, {}, { user_id: userId, ts: String(ts) });
    return res.event_id;
  }

  async upload(userId: string, bytes: Uint8Array, contentType: string, filename: string): Promise<string> {
    const url = new URL(`${this.client.baseUrl}/_matrix/media/v3/upload`);
    url.searchParams.set('user_id', userId);
    url.searchParams.set('filename', filename);
    const res = await fetch(url, { method: 'POST', headers: { authorization: `Bearer ${this.client.accessToken}`, 'content-type': contentType }, body: bytes });
    assert.equal(res.status, 200, await res.clone().text());
    return ((await res.json()) as { content_uri: string }).content_uri;
  }
}

/** Number of lines in all day files of the archive. */
export async function archivedLineCount(out: string): Promise<number> {
  let n = 0;
  for (const rel of await readdir(path.join(out, 'rooms'), { recursive: true })) {
    if (rel.endsWith('.jsonl')) n += (await readFile(path.join(out, 'rooms', rel), 'utf8')).split('\n').filter(Boolean).length;
  }
  return n;
}

/** Every file under `out` with its bytes and mtime. */
export async function filesOf(out: string): Promise<Map<string, { bytes: string; mtimeMs: number }>> {
  const files = new Map<string, { bytes: string; mtimeMs: number }>();
  for (const rel of (await readdir(out, { recursive: true })).sort()) {
    const st = await stat(path.join(out, rel));
    if (st.isFile()) files.set(rel, { bytes: (await readFile(path.join(out, rel))).toString('base64'), mtimeMs: st.mtimeMs });
  }
  return files;
}

/**
 * What Synapse does to a redacted event's stored JSON once redaction_retention_period has passed
 * (its own job runs every 5 minutes). Synapse must be stopped.
 */
export function purgeOriginal(hs: SynapseInstance, eventId: string, version: string): void {
  const db = new Database(hs.dbPath);
  try {
    const row = db.prepare('SELECT json FROM event_json WHERE event_id = ?').get(eventId) as { json: string } | undefined;
    assert.ok(row, `${eventId} is in Synapse's event_json`);
    const v = roomVersion(version);
    assert.ok(v.ok);
    db.prepare('UPDATE event_json SET json = ? WHERE event_id = ?').run(JSON.stringify(redactEvent(JSON.parse(row.json), v.value)), eventId);
    db.prepare('UPDATE redactions SET have_censored = 1 WHERE redacts = ?').run(eventId);
  } finally {
    db.close();
  }
}
