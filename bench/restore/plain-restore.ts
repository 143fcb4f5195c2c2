// The baseline for `steward restore users`: a plain script that reads the same dump files and makes
// the same calls per user as Steward does on an empty server (each user's calls in sequence,
// `concurrency` users in flight): the reads Steward compares with, then the writes, and the password
// hash straight into Synapse's SQLite. Plain fetch, no retries, no job store, no checks beyond what
// the calls need. It knows only the shape bench/restore generates.
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import Database from 'better-sqlite3';
import { call, callOk } from '../lib/http.ts';
import { forEachLimit } from '../lib/pool.ts';

export interface PlainRestoreOptions {
  readonly baseUrl: string;
  readonly asToken: string;
  readonly dump: string;
  readonly synapseDb: string;
  readonly concurrency: number;
}

export interface PlainRestoreResult {
  readonly restored: number;
  readonly failed: { user: string; error: string }[];
  readonly seconds: number;
}

const enc = encodeURIComponent;

export async function plainRestoreUsers(o: PlainRestoreOptions): Promise<PlainRestoreResult> {
  const started = performance.now();
  const hashes = JSON.parse(await readFile(path.join(o.dump, 'password-hashes.json'), 'utf8')).hashes as Record<string, string | null>;
  const db = new Database(o.synapseDb, { timeout: 10_000 });
  const setHash = db.prepare('UPDATE users SET password_hash = ? WHERE name = ?');
  const names = (await readdir(path.join(o.dump, 'users'))).filter((n) => n.endsWith('.json')).sort();
  const failed: { user: string; error: string }[] = [];
  let restored = 0;
  const admin = (method: string, p: string, body?: unknown) => callOk(method, `${o.baseUrl}${p}`, { token: o.asToken, ...(body !== undefined ? { body } : {}) });
  const as = (user: string, method: string, p: string, body?: unknown) => callOk(method, `${o.baseUrl}${p}${p.includes('?') ? '&' : '?'}user_id=${enc(user)}`, { token: o.asToken, ...(body !== undefined ? { body } : {}) });

  await forEachLimit(names, o.concurrency, async (name) => {
    const doc = JSON.parse(await readFile(path.join(o.dump, 'users', name), 'utf8'));
    const u = doc.user_id as string;
    try {
      const existing = await call('GET', `${o.baseUrl}/_synapse/admin/v2/users/${enc(u)}`, { token: o.asToken });
      if (existing.status !== 404) throw new Error(`${u} already exists`);
      await admin('PUT', `/_synapse/admin/v2/users/${enc(u)}`, {
        threepids: doc.account.threepids.map((t: any) => ({ medium: t.medium, address: t.address })),
        external_ids: doc.account.external_ids, admin: doc.account.admin, user_type: doc.account.user_type, locked: doc.account.locked, displayname: doc.profile.displayname,
      });
      const hash = hashes[u];
      if (hash) setHash.run(hash, u);
      await admin('GET', `/_synapse/admin/v1/users/${enc(u)}/accountdata`);
      for (const [type, content] of Object.entries(doc.account_data.global)) await as(u, 'PUT', `/_matrix/client/v3/user/${enc(u)}/account_data/${enc(type)}`, content);
      for (const [room, types] of Object.entries(doc.account_data.rooms as Record<string, Record<string, unknown>>)) {
        for (const [type, content] of Object.entries(types)) await as(u, 'PUT', `/_matrix/client/v3/user/${enc(u)}/rooms/${enc(room)}/account_data/${enc(type)}`, content);
      }
      await as(u, 'GET', '/_matrix/client/v3/pushrules/');
      for (const kind of ['override', 'content', 'room', 'sender', 'underride']) {
        for (const r of doc.push_rules.global[kind] as any[]) {
          if (r.default) {
            if (r.rule_id === '.m.rule.invite_for_me') await as(u, 'PUT', `/_matrix/client/v3/pushrules/global/${kind}/${enc(r.rule_id)}/enabled`, { enabled: r.enabled });
          } else {
            await as(u, 'PUT', `/_matrix/client/v3/pushrules/global/${kind}/${enc(r.rule_id)}`, { actions: r.actions, ...(r.conditions ? { conditions: r.conditions } : {}), ...(r.pattern ? { pattern: r.pattern } : {}) });
          }
        }
      }
      await admin('GET', `/_synapse/admin/v2/users/${enc(u)}/devices`);
      for (const d of doc.devices) await as(u, 'PUT', `/_matrix/client/v3/devices/${enc(d.device_id)}`, d.display_name === null ? {} : { display_name: d.display_name });
      await admin('GET', `/_synapse/admin/v1/users/${enc(u)}/pushers`);
      for (const p of doc.pushers) {
        const { device_id, enabled: _e, ...pusher } = p;
        await as(u, 'POST', `/_matrix/client/v3/pushers/set?device_id=${enc(device_id)}`, { ...pusher, append: true });
      }
      const version = await call('GET', `${o.baseUrl}/_matrix/client/v3/room_keys/version?user_id=${enc(u)}`, { token: o.asToken });
      if (version.status !== 404) throw new Error(`${u} already has a key backup`);
      const created = await as(u, 'POST', '/_matrix/client/v3/room_keys/version', { algorithm: doc.key_backup.algorithm, auth_data: doc.key_backup.auth_data });
      await as(u, 'PUT', `/_matrix/client/v3/room_keys/keys?version=${enc(created.version)}`, { rooms: doc.key_backup.rooms });
      await as(u, 'POST', '/_matrix/client/v3/keys/query', { device_keys: { [u]: [] } });
      await as(u, 'POST', '/_matrix/client/v3/keys/device_signing/upload', { master_key: doc.cross_signing.master_key });
      restored += 1;
    } catch (err) {
      failed.push({ user: u, error: err instanceof Error ? err.message : String(err) });
    }
  });
  db.close();
  return { restored, failed, seconds: (performance.now() - started) / 1000 };
}

// Run on its own (a process of its own, for its peak RSS): node bench/restore/plain-restore.ts --url … --dump … --synapse-db … --concurrency N
if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({ options: { url: { type: 'string' }, dump: { type: 'string' }, 'synapse-db': { type: 'string' }, concurrency: { type: 'string', default: '4' } } });
  const result = await plainRestoreUsers({ baseUrl: values.url!, asToken: process.env.BENCH_AS_TOKEN!, dump: values.dump!, synapseDb: values['synapse-db']!, concurrency: Number(values.concurrency) });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
