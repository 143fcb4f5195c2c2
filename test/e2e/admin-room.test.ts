// The admin room end to end: a real Synapse pushes transactions to the real Steward process, an
// admin types commands in a real client session and reads the answers.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MatrixTestClient } from '../rig/client.ts';
import { runCli, startStewardWithSynapse, type StewardSetup } from '../rig/steward.ts';
import { freePort } from '../rig/ports.ts';
import { command, isReactionTo, isReplyTo, roomHistory } from './room-helpers.ts';

describe('admin room', () => {
  let s: StewardSetup;
  let room: string;
  let bot: string;
  let hsToken: string;

  before(async () => {
    s = await startStewardWithSynapse();
    room = s.steward.adminRoomId;
    bot = s.steward.botUserId;
    hsToken = /hs_token:\s*(\S+)/.exec(await readFile(s.steward.registrationPath, 'utf8'))![1]!;
  });

  after(async () => {
    await s?.steward.stop();
    await s?.hs.cleanup();
  });

  it('creates an unencrypted admin room, invites the admin and announces itself', async () => {
    const state = await s.adminClient.roomState(room);
    assert.equal(state.find((e: any) => e.type === 'm.room.encryption'), undefined);
    assert.equal(state.find((e: any) => e.type === 'm.room.join_rules')?.content.join_rule, 'invite');
    const history = await roomHistory(s.adminClient, room);
    const startup = history.find((e) => e.sender === bot && /^Steward \S+ started on /.test(e.content?.body ?? ''));
    assert.ok(startup, 'startup notice');
    assert.equal(startup.content.msgtype, 'm.notice');
    assert.match(startup.content.body, /Synapse 1\.\d+/);
  });

  it('answers !help with every command, as an HTML notice, and reacts ✅', async () => {
    const { eventId, reply } = await command(s.adminClient, room, bot, '!help');
    assert.equal(reply.content.msgtype, 'm.notice');
    assert.equal(reply.content.format, 'org.matrix.custom.html');
    for (const name of ['!status', '!jobs', '!job', '!cancel', '!dump users']) assert.ok(reply.content.body.includes(name), name);
    await s.adminClient.waitForEvent((ev) => isReactionTo(ev, eventId, '✅'));
  });

  it('answers !help <command> with its usage', async () => {
    const { reply } = await command(s.adminClient, room, bot, '!help dump users');
    assert.match(reply.content.body, /Usage: !dump users \[--out PATH\] \[--user @user:server\]… \[--include-deactivated\] \[--concurrency N\]/);
  });

  it('answers !status with version, homeserver and jobs', async () => {
    const { reply } = await command(s.adminClient, room, bot, '!status');
    assert.match(reply.content.body, /^Steward \d+\.\d+\.\d+/);
    assert.ok(reply.content.body.includes(s.hs.serverName));
    assert.match(reply.content.body, /Jobs: /);
  });

  it('suggests the nearest command for a typo and reacts ❌', async () => {
    const { eventId, reply } = await command(s.adminClient, room, bot, '!stauts');
    assert.match(reply.content.body, /Unknown command "stauts"\. Did you mean !status\?/);
    await s.adminClient.waitForEvent((ev) => isReactionTo(ev, eventId, '❌'));
    const multi = await command(s.adminClient, room, bot, '!dump usres');
    assert.match(multi.reply.content.body, /Did you mean !dump users\?/);
  });

  it('answers bad arguments with the usage', async () => {
    const { reply } = await command(s.adminClient, room, bot, '!dump users --concurrency lots');
    assert.match(reply.content.body, /--concurrency expects a whole number/);
    assert.match(reply.content.body, /Usage: !dump users/);
    const unknown = await command(s.adminClient, room, bot, '!jobs --everything');
    assert.match(unknown.reply.content.body, /Unknown option --everything/);
  });

  it('refuses a non-admin with a short reply and a log line, and runs nothing', async () => {
    const mallory = await s.hs.registerUser('mallory');
    const malloryClient = new MatrixTestClient(s.hs.clientUrl, mallory.userId, mallory.accessToken);
    await s.adminClient.invite(room, mallory.userId);
    await malloryClient.join(room);
    const eventId = await malloryClient.sendText(room, '!dump users');
    const { event } = await s.adminClient.waitForEvent((ev) => ev.sender === bot && isReplyTo(ev, eventId));
    assert.match(event.content.body, /Only the admins listed in the config/);
    const lines = await s.steward.logLines();
    assert.ok(lines.some((l) => l.msg === 'refused a command from a non-admin' && l.sender === mallory.userId));
    const jobs = await s.steward.cli(['jobs', '--json']);
    assert.equal(jobs.code, 0);
    assert.equal(JSON.parse(jobs.stdout).text, 'No jobs yet.');
  });

  it('refuses transactions with a wrong or missing hs_token with 403 M_FORBIDDEN', async () => {
    const url = `http://127.0.0.1:${s.steward.port}/_matrix/app/v1/transactions/forged-1`;
    const body = JSON.stringify({ events: [fakeCommand('$forged', '!status')] });
    for (const headers of [{ authorization: 'Bearer not-the-token' }, {}]) {
      const res = await fetch(url, { method: 'PUT', headers: { 'content-type': 'application/json', ...headers }, body });
      assert.equal(res.status, 403);
      assert.equal(((await res.json()) as { errcode?: string }).errcode, 'M_FORBIDDEN');
    }
    // A sentinel command handled after the forged ones proves they were never queued.
    await command(s.adminClient, room, bot, '!jobs');
    const history = await roomHistory(s.adminClient, room);
    assert.equal(history.filter((e) => isReplyTo(e, '$forged')).length, 0);
  });

  it('acts once on a replayed transaction, and again on a new one that reuses the txnId', async () => {
    const put = (txnId: string, events: unknown[]) => fetch(`http://127.0.0.1:${s.steward.port}/_matrix/app/v1/transactions/${txnId}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${hsToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ events }),
    });
    const first = [fakeCommand('$replayed-1', '!status')];
    for (let i = 0; i < 3; i++) assert.equal((await put('1', first)).status, 200);
    // Synapse on SQLite restarts txnIds at 1: same id, new content, must be handled.
    assert.equal((await put('1', [fakeCommand('$after-restart-1', '!status')])).status, 200);
    await command(s.adminClient, room, bot, '!jobs');
    const history = await roomHistory(s.adminClient, room);
    assert.equal(history.filter((e) => e.sender === bot && isReplyTo(e, '$replayed-1')).length, 1);
    assert.equal(history.filter((e) => e.sender === bot && isReplyTo(e, '$after-restart-1')).length, 1);
  });

  it('refuses to start on an encrypted admin room, saying why', async () => {
    const encrypted = await s.adminClient.createRoom({ preset: 'private_chat', invite: [bot], initial_state: [{ type: 'm.room.encryption', state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } }] });
    const config = JSON.parse(await readFile(s.steward.configPath, 'utf8'));
    config.admin_room.room = encrypted;
    config.storage.database = path.join(s.steward.dir, 'encrypted-check.db');
    // Its own port: the running Steward keeps its listener, and a taken port is refused first.
    config.appservice.port = await freePort();
    const configPath = path.join(s.steward.dir, 'encrypted.yaml');
    await writeFile(configPath, JSON.stringify(config));
    const run = await runCli(['run', '-c', configPath, '-r', s.steward.registrationPath]);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /is encrypted\. Steward does not do end-to-end encryption/);
  });

  function fakeCommand(eventId: string, body: string) {
    return { type: 'm.room.message', room_id: room, sender: s.admin.userId, event_id: eventId, origin_server_ts: Date.now(), content: { msgtype: 'm.text', body } };
  }
});
