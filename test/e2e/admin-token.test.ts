// `homeserver.admin_token_file` on a Synapse that checks tokens itself (no MAS): the bot is NOT a
// server admin, the file holds the access token of a real admin user. Admin API calls then go
// with that token and everything else with the appservice token; without the file Steward cannot
// start; bad files stop it with a message naming the file and never the token.
import assert from 'node:assert/strict';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { freePort } from '../rig/ports.ts';
import { runCli, startStewardWithSynapse, type StewardSetup } from '../rig/steward.ts';
import { command, replyMatching, roomHistory } from './room-helpers.ts';

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

describe('admin token without MAS', () => {
  let s: StewardSetup;
  let token: string;
  let room: string;
  let bot: string;

  /** `steward run` with the test's config, `admin_token_file` replaced; it must stop at start-up. */
  async function runWith(name: string, tokenFile: string | null, tokenText?: string): Promise<{ code: number; stdout: string; stderr: string }> {
    const config = JSON.parse(await readFile(s.steward.configPath, 'utf8'));
    config.homeserver = { ...config.homeserver, admin_token_file: tokenFile ?? undefined };
    if (tokenFile === null) delete config.homeserver.admin_token_file;
    // Its own database and port: the running Steward keeps its state and its listener to itself.
    config.storage = { ...config.storage, database: path.join(s.steward.dir, `${name}.db`) };
    config.appservice = { ...config.appservice, port: await freePort() };
    if (tokenText !== undefined && tokenFile !== null) await writeFile(path.join(s.steward.dir, tokenFile), tokenText, { mode: 0o600 });
    const file = path.join(s.steward.dir, `${name}.yaml`);
    await writeFile(file, JSON.stringify(config));
    return runCli(['run', '-c', file, '-r', s.steward.registrationPath]);
  }

  before(async () => {
    s = await startStewardWithSynapse({ adminTokenFile: true });
    token = (await readFile(path.join(s.steward.dir, 'admin-token'), 'utf8')).trim();
    room = s.steward.adminRoomId;
    bot = s.steward.botUserId;
  });

  after(async () => {
    await s?.steward.stop();
    await s?.hs.cleanup();
  });

  it('the bot is not a server admin: the admin API refuses the appservice token, and accepts the file\'s token', async () => {
    const asBot = await fetch(`${s.hs.clientUrl}/_synapse/admin/v2/users/${encodeURIComponent(bot)}`, { headers: { authorization: `Bearer ${s.steward.asToken}` } });
    assert.equal(asBot.status, 403);
    await asBot.body?.cancel();
    const withToken = await fetch(`${s.hs.clientUrl}/_synapse/admin/v2/users/${encodeURIComponent(bot)}`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(withToken.status, 200);
    assert.equal(((await withToken.json()) as { admin: boolean }).admin, false, 'the bot stays a plain user');
  });

  it('!dump users lists and dumps every user through the admin token', async () => {
    const { eventId } = await command(s.adminClient, room, bot, '!dump users');
    const done = await replyMatching(s.adminClient, room, bot, eventId, /dumped to|failed/, 120_000);
    assert.match(done.content.body, /dumped to/, done.content.body);
    assert.doesNotMatch(done.content.body, /error/i, done.content.body);
    const dir = /dumped to (\S+)/.exec(done.content.body)![1]!;
    const files = await readdir(path.join(dir, 'users'));
    for (const user of [s.admin.userId, bot]) assert.ok(files.includes(`${encodeURIComponent(user)}.json`), `${user} dumped`);
  });

  it('!doctor in the room and `steward doctor` say the admin API answers the admin token', async () => {
    const { reply } = await command(s.adminClient, room, bot, '!doctor', 90_000);
    const admin = String(reply.content.body).split('\n').find((l) => l.includes(' Admin API rights:'));
    assert.match(admin ?? '', /^✅ Admin API rights: the admin API answers the admin token of \S+admin-token \(Synapse 1\.\d+/, reply.content.body);
    const run = await s.steward.cli(['doctor']);
    assert.match(run.stdout, /✅ Admin API rights: the admin API answers the admin token of \S+admin-token \(Synapse/, run.stdout);
    assert.equal(run.stdout.includes(token) || run.stderr.includes(token), false, 'the terminal never prints the token');
  });

  it('the token appears in no log, room message or dump file', async () => {
    assert.equal((await readFile(s.steward.logPath, 'utf8')).includes(token), false, 'not in Steward\'s log');
    const history = await roomHistory(s.adminClient, room);
    assert.ok(history.length > 3);
    assert.equal(JSON.stringify(history).includes(token), false, 'not in the admin room');
    for (const file of await filesUnder(s.steward.dumpsDir)) {
      assert.equal((await readFile(file, 'utf8')).includes(token), false, `not in ${file}`);
    }
  });

  it('without admin_token_file Steward cannot start: the bot is not an admin, and it says how to fix that', async () => {
    const r = await runWith('no-token', null);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(`${bot} is not a Synapse admin, so it cannot use the admin API`), r.stderr);
    assert.match(r.stderr, /UPDATE users SET admin = 1/);
  });

  it('a token Synapse does not know stops start-up naming the file, never the token', async () => {
    const bogus = `syt_${'x'.repeat(20)}_bogus`;
    const r = await runWith('bogus', 'bogus-token', `${bogus}\n`);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /Synapse does not accept the token in \S+bogus-token \(.*401 M_UNKNOWN_TOKEN.*\): it is unknown to this server, expired, or its device was logged out/);
    assert.match(r.stderr, /put a current access token of a Synapse admin/);
    assert.equal(r.stderr.includes(bogus) || r.stdout.includes(bogus), false, 'the token is never printed');
  });

  it('the token of a user who is not an admin stops start-up naming the file, never the token', async () => {
    const bob = await s.hs.registerUser('bob', { password: 'bob-password' });
    const r = await runWith('plain-user', 'plain-token', `${bob.accessToken}\n`);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /The token in \S+plain-token belongs to a user who is not a Synapse admin \(.*403 M_FORBIDDEN/);
    assert.equal(r.stderr.includes(bob.accessToken) || r.stdout.includes(bob.accessToken), false, 'the token is never printed');
    assert.equal(r.stdout.includes(bob.accessToken), false, 'nor logged (the service logs to stdout)');
  });

  it('`steward doctor` without the token, or with one Synapse rejects, is a ❌ on the admin API line with its fix', async () => {
    const config = JSON.parse(await readFile(s.steward.configPath, 'utf8'));
    const noToken = path.join(s.steward.dir, 'doctor-no-token.yaml');
    await writeFile(noToken, JSON.stringify({ ...config, homeserver: { url: config.homeserver.url, server_name: config.homeserver.server_name } }));
    const without = await runCli(['doctor', '-c', noToken, '-r', s.steward.registrationPath]);
    assert.equal(without.code, 1, without.stdout);
    assert.ok(without.stdout.includes(`❌ Admin API rights: ${bot} cannot use the Synapse admin API (403 M_FORBIDDEN)`), without.stdout);
    assert.match(without.stdout, /fix: make it an admin: curl -X PUT/);
    const bogus = `syt_${'y'.repeat(20)}_bogus`;
    await writeFile(path.join(s.steward.dir, 'doctor-bogus-token'), `${bogus}\n`, { mode: 0o600 });
    const bad = path.join(s.steward.dir, 'doctor-bogus.yaml');
    await writeFile(bad, JSON.stringify({ ...config, homeserver: { ...config.homeserver, admin_token_file: 'doctor-bogus-token' } }));
    const rejected = await runCli(['doctor', '-c', bad, '-r', s.steward.registrationPath]);
    assert.equal(rejected.code, 1, rejected.stdout);
    assert.match(rejected.stdout, /❌ Admin API rights: Synapse does not accept the token in \S+doctor-bogus-token/);
    assert.match(rejected.stdout, /fix: put a current access token of a Synapse admin/);
    assert.doesNotMatch(rejected.stdout, /mas-cli/, 'no MAS steps on a server without MAS');
    assert.equal(rejected.stdout.includes(bogus), false);
  });

  it('a missing, empty or non-file admin_token_file stops start-up with the file named', async () => {
    const missing = await runWith('missing', 'nowhere-token');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /homeserver\.admin_token_file: cannot read \S+nowhere-token: it does not exist/);
    const empty = await runWith('empty', 'empty-token', '\n');
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /homeserver\.admin_token_file: \S+empty-token is empty; it must hold the admin token on one line/);
    await mkdir(path.join(s.steward.dir, 'dir-token'), { recursive: true });
    const dir = await runWith('dir', 'dir-token');
    assert.equal(dir.code, 1);
    assert.match(dir.stderr, /homeserver\.admin_token_file: \S+dir-token is not a file/);
  });

  // Root reads any file whatever its mode: the permission case needs a plain user.
  it('an unreadable admin_token_file stops start-up with the file named', { skip: process.getuid?.() === 0 ? 'running as root, which can read any file' : false }, async () => {
    await writeFile(path.join(s.steward.dir, 'unreadable-token'), `${token}\n`, { mode: 0o000 });
    const r = await runWith('unreadable', 'unreadable-token');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /homeserver\.admin_token_file: cannot read \S+unreadable-token: permission denied/);
    assert.equal(r.stderr.includes(token), false);
  });
});
