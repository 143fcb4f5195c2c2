// `!fed state`, `!fed query` and `steward export-key` end to end: Steward beside hs-a speaks
// federation with hs-a's key to hs-b, where bob made the rooms; what it reports and writes
// matches hs-b's own view of the room (admin API).
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { MatrixTestClient } from '../rig/client.ts';
import type { RegisteredUser, SynapseInstance } from '../rig/synapse.ts';
import { startStewardPair, type StewardSetup } from '../rig/steward.ts';
import { command } from './room-helpers.ts';

const enc = encodeURIComponent;

function stateSet(events: Array<{ type: string; state_key: string; event_id: string }>): string[] {
  return events.map((e) => `${e.type}|${e.state_key}|${e.event_id}`).sort();
}

function filePathOf(body: string): string {
  const m = /Full state: (\S+)/.exec(body);
  assert.ok(m, `the reply names the file: ${body}`);
  return m[1]!;
}

describe('fed commands on two federating Synapses', () => {
  let a: StewardSetup;
  let hsB: SynapseInstance;
  let adminB: MatrixTestClient;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let aliceClient: MatrixTestClient;
  let bobClient: MatrixTestClient;
  let adminRoom: string;
  let bot: string;
  let room: string; // room version 10 (its id names B), created by bob@B
  let room12: string; // room version 12
  let messageTs: number; // a message sent before the rename
  let renameId: string;
  let tmp: string;

  const say = (text: string) => command(a.adminClient, adminRoom, bot, text, 60_000).then((r) => r.reply);

  async function bViewOf(roomId: string): Promise<string[]> {
    const answer = await adminB.request<{ state: Array<{ type: string; state_key: string; event_id: string }> }>('GET', `/_synapse/admin/v1/rooms/${enc(roomId)}/state`);
    return stateSet(answer.state);
  }

  async function joinAlice(roomId: string): Promise<void> {
    await aliceClient.join(roomId, [hsB.serverName]);
    await bobClient.waitForEvent(
      (ev, inRoom) => inRoom === roomId && ev.type === 'm.room.member' && ev.state_key === alice.userId && ev.content?.membership === 'join',
      { fromStart: true, timeoutMs: 30_000 },
    );
  }

  before(async () => {
    tmp = await mkdtemp(path.join(os.tmpdir(), 'steward-fed-cmd-'));
    const pair = await startStewardPair({ a: { federation: true } });
    a = pair.a;
    hsB = pair.b.hs;
    adminB = pair.b.adminClient;
    adminRoom = a.steward.adminRoomId;
    bot = a.steward.botUserId;
    [alice, bob] = await Promise.all([a.hs.registerUser('alice'), hsB.registerUser('bob')]);
    aliceClient = new MatrixTestClient(a.hs.clientUrl, alice.userId, alice.accessToken);
    bobClient = new MatrixTestClient(hsB.clientUrl, bob.userId, bob.accessToken);

    room = await bobClient.createRoom({
      preset: 'public_chat',
      room_version: '10',
      name: 'First name',
      topic: 'Federation state test',
      room_alias_name: 'fedstate',
      power_level_content_override: { users: { [bob.userId]: 100, [alice.userId]: 50 } },
    });
    const messageId = await bobClient.sendText(room, 'before the rename');
    messageTs = (await bobClient.request('GET', `/_matrix/client/v3/rooms/${enc(room)}/event/${enc(messageId)}`)).origin_server_ts;
    // Same clock for both servers: once it has moved on, the rename cannot share the message's millisecond.
    while (Date.now() <= messageTs) await sleep(2);
    renameId = await bobClient.sendState(room, 'm.room.name', '', { name: 'Second name' });
    await joinAlice(room);

    room12 = await bobClient.createRoom({ preset: 'public_chat', room_version: '12', name: 'Version twelve' });
    await joinAlice(room12);
    // command() waits from the client's sync position: take it now, so no reply can slip before it.
    await a.adminClient.waitForEvent(() => true, { timeoutMs: 1 }).catch(() => undefined);
  });

  after(async () => {
    await a?.steward.stop();
    await Promise.all([a?.hs.cleanup(), hsB?.cleanup()]);
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('!fed state --server B: members and power levels as B has them, the file matches B\'s admin API', async () => {
    const reply = await say(`!fed state ${room} --server ${hsB.serverName}`);
    const body: string = reply.content.body;
    assert.ok(body.includes(`as ${hsB.serverName} sees it, room version 10`), body);
    assert.match(body, /Name: Second name · alias #fedstate:/);
    assert.match(body, /Members \(2: 2 join\) by server:/);
    assert.ok(body.includes(`  ${a.hs.serverName}: 1 join\n`), body);
    assert.ok(body.includes(`  ${hsB.serverName}: 1 join\n`), body);
    assert.ok(body.includes(`Power levels: ${bob.userId} 100, ${alice.userId} 50; everyone else 0`), body);
    assert.match(body, /Join rule: public · history visibility: shared/);
    const counts = /Verified (\d+) of (\d+) state events and (\d+) of (\d+) auth chain events\./.exec(body);
    assert.ok(counts, body);
    assert.equal(counts[1], counts[2]);
    assert.equal(counts[3], counts[4]);
    assert.doesNotMatch(body, /rejected/);
    assert.match(reply.content.formatted_body, /<li><code>localhost:\d+<\/code>: 1 join<\/li>/);

    const file = filePathOf(body);
    assert.ok(file.startsWith(path.join(a.steward.dumpsDir, 'fed-state') + path.sep));
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    const written = JSON.parse(await readFile(file, 'utf8'));
    assert.equal(written.room_id, room);
    assert.equal(written.server, hsB.serverName);
    assert.equal(written.at.position, 'after');
    assert.deepEqual(stateSet(written.state), await bViewOf(room));
    assert.deepEqual(written.rejected, []);
    assert.ok(written.auth_chain.length > 0);
  });

  it('--at an earlier event gives the state before it; --ts gives the state as of a moment', async () => {
    const at = await say(`!fed state ${room} --at ${renameId}`); // server from the room id: B
    assert.match(at.content.body, /Name: First name/);
    assert.ok(at.content.body.includes(`At ${renameId}: the state before it`), at.content.body);
    assert.match(at.content.body, /Members \(1: 1 join\)/);
    const atState = JSON.parse(await readFile(filePathOf(at.content.body), 'utf8'));
    assert.ok(!atState.state.some((e: any) => e.state_key === alice.userId));
    assert.equal(atState.state.find((e: any) => e.type === 'm.room.name').content.name, 'First name');

    const ts = await say(`!fed state ${room} --ts ${new Date(messageTs).toISOString()}`);
    assert.match(ts.content.body, /Name: First name/);
    assert.match(ts.content.body, /After \$\S+ \(.*\), the last event at or before/);
  });

  it('resolves an alias over federation', async () => {
    const reply = await say(`!fed state #fedstate:${hsB.serverName}`);
    assert.ok(reply.content.body.includes(`State of ${room} (#fedstate:${hsB.serverName}) as ${hsB.serverName} sees it`), reply.content.body);
  });

  it('room version 12: asks for --server (the room id names none), then verifies against B\'s view', async () => {
    const refused = await say(`!fed state ${room12}`);
    assert.match(refused.content.body, /^❌ .*names no server .* add --server/);
    const reply = await say(`!fed state ${room12} --server ${hsB.serverName}`);
    assert.match(reply.content.body, /room version 12/);
    assert.ok(reply.content.body.includes(`Creators (above every power level): ${bob.userId}`), reply.content.body);
    const written = JSON.parse(await readFile(filePathOf(reply.content.body), 'utf8'));
    assert.deepEqual(stateSet(written.state), await bViewOf(room12));
    assert.deepEqual(written.rejected, []);
  });

  it('!fed query: a signed request answered as formatted JSON; other paths refused; errors with errcode', async () => {
    const reply = await say(`!fed query ${hsB.serverName} /_matrix/federation/v1/version`);
    assert.match(reply.content.body, new RegExp(`^GET ${hsB.serverName} /_matrix/federation/v1/version → OK in \\d+ ms, \\d+ B\\n`));
    assert.match(reply.content.body, /"name": "Synapse"/);
    assert.match(reply.content.formatted_body, /<pre><code class="language-json">\{\n {2}&quot;server&quot;/);

    // An authenticated endpoint: the profile of bob, asked with our signature.
    const profile = await say(`!fed query ${hsB.serverName} /_matrix/federation/v1/query/profile?user_id=${bob.userId}`);
    assert.match(profile.content.body, /"displayname": "bob"/);

    const refused = await say(`!fed query ${hsB.serverName} /_synapse/admin/v1/server_version`);
    assert.match(refused.content.body, /^❌ Only server-server API paths can be queried: the path must start with \/_matrix\//);

    const missing = await say(`!fed query ${hsB.serverName} /_matrix/federation/v1/query/profile?user_id=@nobody:${hsB.serverName}`);
    assert.match(missing.content.body, /^❌ GET .* 404 M_NOT_FOUND/);
  });

  it('steward fed query in the terminal prints the whole answer as JSON', async () => {
    const out = await a.steward.cli(['fed', 'query', hsB.serverName, '/_matrix/key/v2/server']);
    assert.equal(out.code, 0, out.stderr);
    const keys = JSON.parse(out.stdout);
    assert.equal(keys.server_name, hsB.serverName);
  });

  it('steward export-key writes the key 0600 in Synapse\'s format, refuses to overwrite, and never runs in the room', async () => {
    const source = await readFile(a.hs.signingKeyPath, 'utf8');
    const [, version, seed] = source.trim().split(/\s+/);
    const file = path.join(tmp, 'bundle', 'signing.key');
    const out = await a.steward.cli(['export-key', '--out', file]);
    assert.equal(out.code, 0, out.stderr);
    assert.equal(await readFile(file, 'utf8'), source);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.ok(out.stdout.includes(`ed25519:${version}  public key `), out.stdout);
    assert.match(out.stdout, /WARNING: this file is .*private key/);
    assert.ok(!out.stdout.includes(seed!) && !out.stderr.includes(seed!));

    const again = await a.steward.cli(['export-key', '--out', file]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already exists: refusing to overwrite/);

    const inRoom = path.join(tmp, 'from-room.key');
    const reply = await say(`!export-key --out ${inRoom}`);
    assert.match(reply.content.body, /^❌ export-key runs only in the terminal/);
    for (const secret of [seed!, version!]) assert.ok(!JSON.stringify(reply.content).includes(secret));
    await assert.rejects(stat(inRoom));
  });
});
