// Shared by the restore tests: a real total loss of a rig Synapse, and an archive written in the
// contract format (docs/dump-format.md §3) from what the admin API returns.
import assert from 'node:assert/strict';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { MatrixTestClient } from '../rig/client.ts';
import type { StewardInstance } from '../rig/steward.ts';
import type { RegisteredUser, SynapseInstance } from '../rig/synapse.ts';

/** The folder a dump's summary names. */
export function dumpDirOf(text: string): string {
  const m = /dumped to (\S+)/.exec(text);
  assert.ok(m, `the summary names the dump folder: ${text}`);
  return m[1]!;
}

/**
 * Total loss: stop the server, delete its database (and SQLite's side files), start it empty.
 * The signing key and the config stay, as after a reinstall from configuration management.
 * Then the admin and Steward's bot exist again (the bot a server admin), as an operator would set up.
 */
export async function wipeSynapse(hs: SynapseInstance, steward: StewardInstance): Promise<RegisteredUser> {
  await hs.stop();
  for (const suffix of ['', '-wal', '-shm', '-journal']) await rm(hs.dbPath + suffix, { force: true });
  await hs.start();
  const admin = await hs.registerUser('admin', { admin: true, password: 'admin-password' });
  const localpart = steward.botUserId.slice(1, steward.botUserId.indexOf(':'));
  const reg = await fetch(`${hs.clientUrl}/_matrix/client/v3/register`, {
    method: 'POST',
    headers: { authorization: `Bearer ${steward.asToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ type: 'm.login.application_service', username: localpart, inhibit_login: true }),
  });
  assert.ok(reg.ok || reg.status === 400, `the bot registers again: ${reg.status}`);
  const promote = await fetch(`${hs.clientUrl}/_synapse/admin/v2/users/${encodeURIComponent(steward.botUserId)}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${admin.accessToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ admin: true }),
  });
  assert.ok(promote.ok, `the bot is made admin again: ${promote.status}`);
  return admin;
}

/**
 * An archive of `rooms` in the steward.archive/1 layout: archive.json, room.json, one JSONL file
 * per UTC day. Lines carry the fields restore reads (event_id, room_id, origin_server_ts, event
 * with type, sender, content, state_key, redacts); the events come from the admin API's /messages
 * (client format), redacted ones flagged as the archive job flags them.
 */
export async function writeArchiveFixture(admin: MatrixTestClient, serverName: string, rooms: readonly string[], out: string): Promise<void> {
  await mkdir(out, { recursive: true, mode: 0o700 });
  await writeFile(path.join(out, 'archive.json'), JSON.stringify({ format: 'steward.archive/1', server_name: serverName, created_ts: Date.now() }));
  for (const roomId of rooms) {
    const dir = path.join(out, 'rooms', encodeURIComponent(roomId));
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await writeFile(path.join(dir, 'room.json'), JSON.stringify({ format: 'steward.archive-room/1', room_id: roomId, room_version: '10' }));
    const page = await admin.request('GET', `/_synapse/admin/v1/rooms/${encodeURIComponent(roomId)}/messages`, undefined, { dir: 'f', limit: '1000' });
    const byDay = new Map<string, string[]>();
    for (const ev of page.chunk as any[]) {
      const day = new Date(ev.origin_server_ts).toISOString().slice(0, 10);
      const { event_id, room_id, unsigned, ...event } = ev;
      const redacted = unsigned?.redacted_because !== undefined;
      const line = { event_id, room_id, origin_server_ts: ev.origin_server_ts, event: { ...event, room_id, unsigned: unsigned ?? {} }, ...(redacted ? { steward: { redacted: true } } : {}) };
      byDay.set(day, [...(byDay.get(day) ?? []), `${JSON.stringify(line)}\n`]);
    }
    for (const [day, lines] of byDay) {
      const folder = path.join(dir, day.slice(0, 4), day.slice(5, 7));
      await mkdir(folder, { recursive: true, mode: 0o700 });
      await writeFile(path.join(folder, `${day}.jsonl`), lines.join(''));
    }
  }
}
