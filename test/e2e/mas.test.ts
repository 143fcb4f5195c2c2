// Steward on a Synapse that delegates authentication to MAS. Synapse runs with
// `matrix_authentication_service` pointing at a stand-in (test/rig/fake-mas.ts) that only answers
// token introspection for tokens this test mints; Synapse's own delegated-auth code decides what
// each token may do. Steward must start only with an admin-scoped token and say exactly why not.
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MatrixTestClient } from '../rig/client.ts';
import { FakeMas } from '../rig/fake-mas.ts';
import { freePort } from '../rig/ports.ts';
import { runCli, startStewardWithSynapse, type StewardSetup } from '../rig/steward.ts';
import { command, replyMatching, roomHistory } from './room-helpers.ts';

describe('delegated auth (MAS)', () => {
  let mas: FakeMas;
  let s: StewardSetup;
  let room: string;
  let bot: string;
  let alice: MatrixTestClient;
  let usersDump: string;

  /** `steward run` with the test's config, `homeserver` patched; it must stop at start-up. */
  async function runWith(name: string, homeserver: Record<string, unknown>, tokenText?: string): Promise<{ code: number; stdout: string; stderr: string }> {
    const config = JSON.parse(await readFile(s.steward.configPath, 'utf8'));
    config.homeserver = { ...config.homeserver, ...homeserver };
    if (config.homeserver.admin_token_file === null) delete config.homeserver.admin_token_file;
    // Its own database and port: the running Steward keeps its state and its listener to itself.
    config.storage = { ...config.storage, database: path.join(s.steward.dir, `${name}.db`) };
    config.appservice = { ...config.appservice, port: await freePort() };
    if (tokenText !== undefined) await writeFile(path.join(s.steward.dir, `${name}-token`), tokenText, { mode: 0o600 });
    const file = path.join(s.steward.dir, `${name}.yaml`);
    await writeFile(file, JSON.stringify(config));
    return runCli(['run', '-c', file, '-r', s.steward.registrationPath]);
  }

  before(async () => {
    mas = await FakeMas.start();
    // Federation on: !dump rooms reads the rooms over federation as this server.
    s = await startStewardWithSynapse({ mas, federation: true, synapse: { federation: true } });
    room = s.steward.adminRoomId;
    bot = s.steward.botUserId;
    const a = await mas.provisionUser(s.hs, 'alice', { displayname: 'Alice' });
    alice = new MatrixTestClient(s.hs.clientUrl, a.userId, a.accessToken);
  });

  after(async () => {
    await s?.steward.stop();
    await s?.hs.cleanup();
    await mas?.close();
  });

  it('runs on a Synapse that really delegates auth: logins and shared-secret registration are gone, tokens are introspected', async () => {
    for (const p of ['/_matrix/client/v3/login', '/_synapse/admin/v1/register']) {
      const res = await fetch(`${s.hs.clientUrl}${p}`);
      assert.equal(res.status, 404, `${p} is not served under MAS`);
      await res.body?.cancel();
    }
    const metadata = await (await fetch(`${s.hs.clientUrl}/_matrix/client/v1/auth_metadata`)).json() as { issuer: string };
    assert.equal(metadata.issuer, `${mas.url}/`);
    const token = (await readFile(path.join(s.steward.dir, 'admin-token'), 'utf8')).trim();
    assert.ok((mas.introspections.get(token) ?? 0) >= 1, "Synapse asked MAS about Steward's admin token");
    assert.ok((mas.introspections.get(s.admin.accessToken) ?? 0) >= 1, "Synapse asked MAS about the admin's token");
    assert.equal(mas.introspections.has(s.steward.asToken), false, 'the appservice token is never introspected');
  });

  it('the appservice token alone is refused by the admin API even for the bot (why the admin token exists)', async () => {
    const res = await fetch(`${s.hs.clientUrl}/_synapse/admin/v2/users/${encodeURIComponent(bot)}`, { headers: { authorization: `Bearer ${s.steward.asToken}` } });
    assert.equal(res.status, 403);
    await res.body?.cancel();
  });

  it('announces itself with the delegation and answers !help and !status', async () => {
    const history = await roomHistory(s.adminClient, room);
    const startup = history.find((e) => e.sender === bot && /^Steward \S+ started on /.test(e.content?.body ?? ''));
    assert.ok(startup, 'startup notice');
    assert.match(startup.content.body, /Synapse 1\.\d+\.\d+, auth delegated to MAS/);
    const help = await command(s.adminClient, room, bot, '!help');
    assert.ok(help.reply.content.body.includes('!dump users'));
    const status = await command(s.adminClient, room, bot, '!status');
    assert.match(status.reply.content.body, /^Steward \d+\.\d+\.\d+/);
    assert.ok(status.reply.content.body.includes(s.hs.serverName));
  });

  it('!dump users lists users with guests=false and dumps them through the admin token', async () => {
    await alice.setAccountData('org.example.settings', { theme: 'dark' });
    const { eventId } = await command(s.adminClient, room, bot, '!dump users');
    const done = await replyMatching(s.adminClient, room, bot, eventId, /dumped to/, 120_000);
    assert.doesNotMatch(done.content.body, /error/i, done.content.body);
    const dir = /dumped to (\S+)/.exec(done.content.body)![1]!;
    usersDump = dir;
    const files = await readdir(path.join(dir, 'users'));
    for (const user of [alice.userId, s.admin.userId, bot]) assert.ok(files.includes(`${encodeURIComponent(user)}.json`), `${user} dumped`);
    const dumped = JSON.parse(await readFile(path.join(dir, 'users', `${encodeURIComponent(alice.userId)}.json`), 'utf8'));
    assert.deepEqual(dumped.account_data.global['org.example.settings'], { theme: 'dark' });
    assert.ok(dumped.devices.some((d: any) => d.device_id.startsWith('MASDEV')), 'the device MAS created is in the dump');
    // Synapse answers 400 to guests=true under MAS: the listing must have asked with guests=false.
    const access = await readFile(s.hs.logPath, 'utf8');
    assert.match(access, /GET \/_synapse\/admin\/v2\/users\?[^ ]*guests=false/);
    assert.doesNotMatch(access, /GET \/_synapse\/admin\/v2\/users\?[^ ]*guests=true/);
  });

  it('!dump rooms dumps a room with every event verified (admin API through the admin token, federation as the server)', async () => {
    const roomId = await alice.createRoom({ name: 'Under MAS' });
    await alice.sendText(roomId, 'hello from a MAS user');
    const { eventId } = await command(s.adminClient, room, bot, '!dump rooms');
    const done = await replyMatching(s.adminClient, room, bot, eventId, /finished|failed/, 120_000);
    assert.match(done.content.body, /finished/, done.content.body);
    const dir = /dumped to (\S+)/.exec(done.content.body)![1]!;
    const doc = JSON.parse(await readFile(path.join(dir, 'rooms', `${encodeURIComponent(roomId)}.json`), 'utf8'));
    assert.equal(doc.room_id, roomId);
    assert.equal(doc.errors, undefined);
    assert.equal(doc.federation.counts.failed, 0);
  });

  it('!snapshot of a MAS user writes a leak-checked blueprint (identity assertion under MSC4190)', async () => {
    const { eventId } = await command(s.adminClient, room, bot, `!snapshot ${alice.userId}`);
    const done = await replyMatching(s.adminClient, room, bot, eventId, /finished|failed/, 120_000);
    assert.match(done.content.body, /finished/, done.content.body);
    assert.match(done.content.body, /Leak check passed/);
  });

  it('!restore users --dry-run compares the dump with the server through the admin token', async () => {
    const { eventId } = await command(s.adminClient, room, bot, `!restore users ${usersDump} --dry-run`);
    const done = await replyMatching(s.adminClient, room, bot, eventId, /finished|failed/, 120_000);
    assert.match(done.content.body, /finished/, done.content.body);
    assert.match(done.content.body, /0 would change, 3 unchanged, 0 failed/, done.content.body);
  });

  it('archive (terminal) archives the rooms under MAS', async () => {
    const run = await s.steward.cli(['archive', '--json']);
    assert.equal(run.code, 0, run.stderr);
    const job = JSON.parse(run.stdout.trim().split('\n').pop()!).job;
    assert.equal(job.state, 'done');
    assert.equal(job.result.details.rooms_failed, 0);
    assert.ok(job.result.details.events > 0, 'events archived');
  });

  it('without admin_token_file it stops at start-up with the exact steps to issue one', async () => {
    const r = await runWith('no-token', { admin_token_file: null });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /Synapse delegates authentication to MAS \(http:\/\/127\.0\.0\.1:\d+\/\)/);
    assert.ok(r.stderr.includes('mas-cli manage issue-compatibility-token --yes-i-want-to-grant-synapse-admin-privileges steward'), r.stderr);
    assert.ok(r.stderr.includes('admin_token_file'), r.stderr);
  });

  it('with a token lacking the admin scope it says so, names the file and never prints the token', async () => {
    const token = mas.mint('steward');
    const r = await runWith('plain', { admin_token_file: 'plain-token' }, `${token}\n`);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /plain-token is valid but does not carry Synapse's admin scope \(urn:synapse:admin:\*\)/);
    assert.ok(r.stderr.includes('--yes-i-want-to-grant-synapse-admin-privileges'), r.stderr);
    assert.equal(r.stderr.includes(token) || r.stdout.includes(token), false, 'the token is never printed');
    assert.equal((await readFile(s.steward.logPath, 'utf8')).includes(token), false, 'nor logged');
  });

  it('with a revoked token it says MAS considers it not active', async () => {
    const token = mas.mint('steward', { admin: true });
    mas.revoke(token);
    const r = await runWith('revoked', { admin_token_file: 'revoked-token' }, `${token}\n`);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /revoked-token is not accepted: MAS says it is not active/);
  });

  it('refuses a missing or malformed token file with the key named', async () => {
    const missing = await runWith('missing', { admin_token_file: 'nowhere-token' });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /homeserver\.admin_token_file: cannot read .*nowhere-token: it does not exist/);
    const two = await runWith('two', { admin_token_file: 'two-token' }, 'one two\n');
    assert.equal(two.code, 1);
    assert.match(two.stderr, /must hold exactly one token on one line/);
  });
});
