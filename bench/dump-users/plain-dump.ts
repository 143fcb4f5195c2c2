// The baseline for `steward dump users`: a plain script making the same admin and client API
// calls per user (each user's calls in sequence, `concurrency` users in flight) and writing the
// same files the same way (temp file, fsync, rename, mode 0600). Plain fetch; no retries, no
// job store, no framework. Whatever Steward costs beyond this is Steward's own.
import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { mkdir, open, rename } from 'node:fs/promises';
import path from 'node:path';
import { call, callOk } from '../lib/http.ts';
import { forEachLimit } from '../lib/pool.ts';

export interface PlainDumpOptions {
  readonly baseUrl: string;
  /** The appservice's as_token: admin calls as the (admin) bot, client calls as the user via ?user_id=. */
  readonly asToken: string;
  readonly serverName: string;
  readonly out: string;
  readonly concurrency: number;
  /** Stop after this many users (a warm-up pass); all by default. */
  readonly limit?: number;
}

export interface PlainDumpResult {
  readonly directory: string;
  readonly usersDir: string;
  readonly written: number;
  readonly failed: { user: string; error: string }[];
  readonly seconds: number;
}

const PAGE_SIZE = 100;
const enc = encodeURIComponent;

async function writeJsonAtomic(file: string, value: unknown): Promise<void> {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.writeFile(`${JSON.stringify(value, null, 2)}\n`);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, file);
}

export async function plainDumpUsers(o: PlainDumpOptions): Promise<PlainDumpResult> {
  const started = performance.now();
  const startedTs = Date.now();
  const admin = (p: string): string => `${o.baseUrl}/_synapse/admin${p}`;
  const asUser = (p: string, userId: string): string => `${o.baseUrl}/_matrix/client/v3${p}?user_id=${enc(userId)}`;
  const auth = { token: o.asToken };

  const directory = path.join(o.out, `users-plain-${new Date().toISOString().replace(/[-:.]/g, '')}`);
  const usersDir = path.join(directory, 'users');
  await mkdir(usersDir, { recursive: true, mode: 0o700 });
  const version = await callOk<{ server_version: string }>('GET', admin('/v1/server_version'), auth);
  const manifest = (state: string, written: number, failed: { user: string; error: string }[]): Record<string, unknown> => ({
    format: 'steward.dump-manifest/1',
    kind: 'users',
    state,
    server_name: o.serverName,
    synapse_version: version.server_version,
    started_ts: startedTs,
    finished_ts: state === 'complete' ? Date.now() : null,
    counts: { users_dumped: written, users_failed: failed.length },
    errors: failed,
  });
  await writeJsonAtomic(path.join(directory, 'manifest.json'), manifest('in-progress', 0, []));

  async function* userIds(): AsyncGenerator<string> {
    let from: string | undefined;
    let yielded = 0;
    for (;;) {
      const qs = new URLSearchParams({ limit: String(PAGE_SIZE), guests: 'true', deactivated: 'false', order_by: 'name' });
      if (from !== undefined) qs.set('from', from);
      const page = await callOk<{ users: { name: string }[]; next_token?: string | number }>('GET', admin(`/v2/users?${qs}`), auth);
      for (const u of page.users) {
        if (o.limit !== undefined && yielded >= o.limit) return;
        yielded += 1;
        yield u.name;
      }
      if (page.next_token === undefined || page.next_token === null) return;
      from = String(page.next_token);
    }
  }

  let written = 0;
  const failed: { user: string; error: string }[] = [];
  await forEachLimit(userIds(), o.concurrency, async (userId) => {
    try {
      const details = await callOk<Record<string, unknown>>('GET', admin(`/v2/users/${enc(userId)}`), auth);
      const errors: Record<string, string> = {};
      const section = async (name: string, method: string, url: string, body?: unknown): Promise<any> => {
        const r = await call(method, url, body === undefined ? auth : { ...auth, body });
        if (r.status >= 200 && r.status < 300) return r.json ?? {};
        errors[name] = `${r.status} ${r.text.slice(0, 200)}`;
        return null;
      };
      const { name: _name, displayname, avatar_url, ...account } = details;
      const deactivated = account['deactivated'] === true || account['deactivated'] === 1;
      const devices = await section('devices', 'GET', admin(`/v2/users/${enc(userId)}/devices`));
      const pushers = await section('pushers', 'GET', admin(`/v1/users/${enc(userId)}/pushers`));
      const accountData = await section('account_data', 'GET', admin(`/v1/users/${enc(userId)}/accountdata`));
      const memberships = await section('memberships', 'GET', admin(`/v1/users/${enc(userId)}/memberships`));
      let pushRules: unknown = null;
      let keyBackup: unknown = null;
      let crossSigning: unknown = null;
      if (!deactivated) {
        pushRules = await section('push_rules', 'GET', asUser('/pushrules/', userId));
        const backup = await call('GET', asUser('/room_keys/version', userId), auth);
        if (backup.status === 200) keyBackup = backup.json;
        else if (backup.status !== 404) errors['key_backup'] = `${backup.status} ${backup.text.slice(0, 200)}`;
        const keys = await section('cross_signing', 'POST', asUser('/keys/query', userId), { device_keys: { [userId]: [] } });
        if (keys) {
          const pick = (field: string): unknown => keys[field]?.[userId] ?? null;
          crossSigning = { master_key: pick('master_keys'), self_signing_key: pick('self_signing_keys'), user_signing_key: pick('user_signing_keys') };
        }
      }
      const document: Record<string, unknown> = {
        format: 'steward.user-dump/1',
        user_id: userId,
        dumped_ts: Date.now(),
        profile: { displayname: displayname ?? null, avatar_url: avatar_url ?? null },
        account,
        account_data: accountData?.account_data ?? null,
        devices: devices?.devices ?? null,
        pushers: pushers?.pushers ?? null,
        push_rules: pushRules,
        memberships: memberships?.memberships ?? null,
        key_backup: keyBackup,
        cross_signing: crossSigning,
      };
      if (Object.keys(errors).length > 0) document['errors'] = errors;
      await writeJsonAtomic(path.join(usersDir, `${enc(userId)}.json`), document);
      written += 1;
    } catch (err) {
      failed.push({ user: userId, error: err instanceof Error ? err.message : String(err) });
    }
  });
  await writeJsonAtomic(path.join(directory, 'manifest.json'), manifest('complete', written, failed));
  return { directory, usersDir, written, failed, seconds: (performance.now() - started) / 1000 };
}

// As a script, in its own process (the bench measures its peak RSS as a baseline for Steward's):
//   BENCH_AS_TOKEN=… node bench/dump-users/plain-dump.ts --url URL --server-name NAME --out DIR [--concurrency N]
// prints the result as one JSON line.
if (import.meta.main) {
  const { values } = parseArgs({
    options: { url: { type: 'string' }, 'server-name': { type: 'string' }, out: { type: 'string' }, concurrency: { type: 'string', default: '4' } },
    strict: true,
  });
  const asToken = process.env['BENCH_AS_TOKEN'];
  if (!values.url || !values['server-name'] || !values.out || !asToken) {
    process.stderr.write('usage: BENCH_AS_TOKEN=… node bench/dump-users/plain-dump.ts --url URL --server-name NAME --out DIR [--concurrency N]\n');
    process.exit(2);
  }
  const result = await plainDumpUsers({ baseUrl: values.url, asToken, serverName: values['server-name'], out: values.out, concurrency: Number(values.concurrency) });
  process.stdout.write(`${JSON.stringify(result)}\n`);
}
