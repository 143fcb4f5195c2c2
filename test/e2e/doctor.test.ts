// !doctor and `steward doctor` against a real Synapse with the real Steward running: the room's
// doctor round-trips a test event and receipt; the terminal's exits 1 on a ❌.
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { writeSigningKey } from '../rig/keys.ts';
import { FakeMas } from '../rig/fake-mas.ts';
import { freePort } from '../rig/ports.ts';
import { attachSteward, runCli, startStewardWithSynapse, type StewardSetup } from '../rig/steward.ts';
import { prepareSynapse } from '../rig/synapse.ts';
import { command } from './room-helpers.ts';

interface Check { status: 'ok' | 'warn' | 'fail'; title: string; detail: string; fix?: string }

function line(body: string, title: string): string {
  const found = body.split('\n').find((l) => l.includes(` ${title}:`));
  assert.ok(found, `no line for ${title} in:\n${body}`);
  return found.replace(` ${title}: `, ' ');
}

describe('doctor', () => {
  let s: StewardSetup;

  before(async () => {
    const hs = await prepareSynapse({ name: 'doctor-hs', federation: true });
    await hs.updateConfig({ redaction_retention_period: '3d' });
    s = await attachSteward(hs, {
      federation: true,
      config: {
        homeserver: { synapse_config: hs.configPath },
        recovery: { log_sources: [{ file: hs.logPath, start_at: 'start' }], poll_interval_ms: 200 },
      },
    });
  });

  after(async () => {
    await s?.steward.stop();
    await s?.hs.cleanup();
  });

  it('!doctor round-trips a test event and read receipt and checks the deployment', async () => {
    const { reply } = await command(s.adminClient, s.steward.adminRoomId, s.steward.botUserId, '!doctor', 90_000);
    const body = String(reply.content.body);
    assert.match(body, /^Doctor: \d+ ✅ · \d+ ⚠️ · \d+ ❌/);
    assert.match(line(body, 'Homeserver reachable'), /^✅/);
    assert.match(line(body, 'Registration loaded by Synapse'), /^✅ .*id, url and sender_localpart match/);
    assert.match(line(body, 'Admin API rights'), /^✅ .*Synapse 1\.\d+/);
    assert.match(line(body, 'Synapse reaches Steward (ping)'), /^✅/);
    assert.match(line(body, 'Transactions reach Steward'), /^✅ a test event sent as the bot came back through the transaction endpoint in \d+ ms/);
    assert.match(line(body, 'Ephemeral events (read receipts) reach Steward'), /^✅ a test read receipt arrived as an ephemeral event/);
    assert.match(line(body, 'Signing key'), /^✅ .* publishes ed25519:\S+ with the public key of federation\.signing_key_path/);
    assert.match(line(body, 'Key notary'), /^✅ our own server .* answers key queries/);
    assert.match(line(body, 'Rate limits'), /^✅ rate_limited: false in the registration/);
    assert.match(line(body, `Log source file:${s.hs.logPath}`), /^✅ followed, \d+ lines read/);
    assert.match(line(body, 'redaction_retention_period'), /^✅ 3 d: Synapse purges/);
    assert.match(line(body, 'Free space for dumps'), /free of/);
    assert.equal(reply.content.format, 'org.matrix.custom.html');
    assert.match(body, /· 0 ❌/);
    assert.ok(!body.split('\n').some((l) => l.startsWith('❌')));
  });

  it('`steward doctor` on the terminal checks what it can, says what it cannot, exit code 0 without ❌', async () => {
    const run = await s.steward.cli(['doctor']);
    assert.equal(run.code, 0, run.stdout + run.stderr);
    assert.match(line(run.stdout, 'Synapse reaches Steward (ping)'), /^✅ Synapse called http:\/\/127\.0\.0\.1:\d+ with the hs_token/);
    assert.match(line(run.stdout, 'Ephemeral events (read receipts) reach Steward'), /the terminal cannot see deliveries/);
    assert.match(run.stdout, /From the terminal: no running appservice here/);
    const json = await s.steward.cli(['doctor', '--json']);
    assert.equal(json.code, 0);
    const parsed = JSON.parse(json.stdout) as { ok: boolean; checks: Check[] };
    assert.equal(parsed.ok, true);
    assert.ok(parsed.checks.length >= 11);
    assert.ok(parsed.checks.every((c) => ['ok', 'warn', 'fail'].includes(c.status) && c.title && c.detail));
  });

  it('a signing key the server does not publish is a ❌ with the fix, and exit code 1', async () => {
    const wrongKey = path.join(s.steward.dir, 'wrong.key');
    await writeSigningKey(wrongKey);
    const config = JSON.parse(await readFile(s.steward.configPath, 'utf8')) as Record<string, Record<string, unknown>>;
    const wrongConfig = path.join(s.steward.dir, 'wrong-key.yaml');
    await writeFile(wrongConfig, JSON.stringify({ ...config, federation: { ...config.federation, signing_key_path: wrongKey } }));
    const run = await runCli(['doctor', '-c', wrongConfig, '-r', s.steward.registrationPath]);
    assert.equal(run.code, 1, run.stdout);
    assert.match(run.stdout, /❌ Signing key: .*does not publish ed25519:\S+|❌ Signing key: .*another public key/);
    assert.match(run.stdout, /fix: set federation\.signing_key_path to the signing_key_path of this Synapse/);
  });

  it('a registration Synapse has not loaded is a ❌ that says so, exit code 1', async () => {
    const other = path.join(s.steward.dir, 'not-loaded-registration.yaml');
    const gen = await runCli(['generate-registration', '-c', s.steward.configPath, '-f', other]);
    assert.equal(gen.code, 0, gen.stderr);
    const run = await runCli(['doctor', '-c', s.steward.configPath, '-r', other]);
    assert.equal(run.code, 1, run.stdout);
    assert.match(line(run.stdout, 'Registration loaded by Synapse'), /^❌ Synapse does not know the as_token of the registration file Steward uses/);
    assert.match(run.stdout, /fix: list that exact file under app_service_config_files/);
    assert.match(line(run.stdout, 'Homeserver reachable'), /^✅/, 'reachability does not depend on the token');
    // `run` with it blames the registration, not homeserver.url (Synapse 401s /versions for an unknown token).
    const config = JSON.parse(await readFile(s.steward.configPath, 'utf8')) as Record<string, Record<string, unknown>>;
    const own = path.join(s.steward.dir, 'not-loaded.yaml');
    await writeFile(own, JSON.stringify({ ...config, appservice: { ...config.appservice, port: await freePort() }, storage: { ...config.storage, database: path.join(s.steward.dir, 'not-loaded.db') } }));
    const start = await runCli(['run', '-c', own, '-r', other]);
    assert.equal(start.code, 1, start.stderr);
    assert.match(start.stderr, /Cannot register the bot user .*Is the registration file loaded by Synapse \(app_service_config_files\)/);
    assert.doesNotMatch(start.stderr, /is homeserver\.url the client-server API/);
  });

  it('a config that disagrees with the registration, an unreachable notary, a missing log file, an unreadable synapse_config and a rate-limited registration each get their line and fix', async () => {
    const config = JSON.parse(await readFile(s.steward.configPath, 'utf8')) as Record<string, Record<string, unknown>>;
    const missingLog = path.join(s.steward.dir, 'no-such.log');
    const broken = path.join(s.steward.dir, 'broken.yaml');
    await writeFile(broken, JSON.stringify({
      ...config,
      homeserver: { ...config.homeserver, synapse_config: path.join(s.steward.dir, 'no-such-homeserver.yaml') },
      appservice: { ...config.appservice, url: 'http://elsewhere.invalid:9993' },
      federation: { ...config.federation, notary: `localhost:${await freePort()}` },
      recovery: { ...config.recovery, log_sources: [{ file: missingLog }] },
    }));
    // The same tokens (Synapse knows them), but the file Steward reads says it is rate limited.
    const limited = path.join(s.steward.dir, 'rate-limited-registration.yaml');
    const registration = await readFile(s.steward.registrationPath, 'utf8');
    assert.match(registration, /rate_limited: false/);
    await writeFile(limited, registration.replace(/rate_limited: false/, 'rate_limited: true'), { mode: 0o600 });
    const run = await runCli(['doctor', '-c', broken, '-r', limited]);
    assert.equal(run.code, 1, run.stdout);
    assert.match(line(run.stdout, 'Key notary'), /^❌ the notary localhost:\d+ does not answer \/_matrix\/key\/v2\/query/);
    assert.match(line(run.stdout, `Log source file:${missingLog}`), /^❌ .*no-such\.log is not readable \(ENOENT\)/);
    assert.match(line(run.stdout, 'redaction_retention_period'), /^⚠️ .*no-such-homeserver\.yaml/);
    assert.match(line(run.stdout, 'Rate limits'), /^⚠️ the bot is rate limited \(the registration has no rate_limited: false and the bot has no override\)/);
    assert.match(run.stdout, /fix: set rate_limited: false in the registration/);
    assert.match(line(run.stdout, 'Registration loaded by Synapse'), /^⚠️ loaded, but the file and the config disagree: url is http:\/\/127\.0\.0\.1:\d+, appservice\.url is http:\/\/elsewhere\.invalid:9993/);
    assert.match(run.stdout, /fix: run generate-registration again with this config/);
    // The parts that were not broken still pass.
    assert.match(line(run.stdout, 'Admin API rights'), /^✅/);
    assert.match(line(run.stdout, 'Signing key'), /^✅/);
  });

  it('the terminal doctor with Synapse down says the homeserver is not reachable, exit code 1', async () => {
    await s.steward.stop();
    await s.hs.stop();
    const run = await s.steward.cli(['doctor']);
    assert.equal(run.code, 1);
    assert.match(line(run.stdout, 'Homeserver reachable'), /^❌ http:\/\/127\.0\.0\.1:\d+ does not answer/);
    assert.match(run.stdout, /fix: start Synapse/);
    assert.match(line(run.stdout, 'Admin API rights'), /^⚠️ not checked: the homeserver does not answer/);
    assert.match(line(run.stdout, 'Free space for dumps'), /free of/);
  });
});

describe('doctor under delegated auth (MAS)', () => {
  let mas: FakeMas;
  let s: StewardSetup;

  before(async () => {
    mas = await FakeMas.start();
    s = await startStewardWithSynapse({ mas });
  });

  after(async () => {
    await s?.steward.stop();
    await s?.hs.cleanup();
    await mas?.close();
  });

  it('the terminal doctor loads the admin token itself and says the admin API answers it under MAS', async () => {
    const run = await s.steward.cli(['doctor']);
    assert.match(line(run.stdout, 'Admin API rights'), /^✅ the admin API answers the admin token of \S+ under MAS \(delegated authentication\) \(Synapse 1\.\d+/);
    assert.match(line(run.stdout, 'Registration loaded by Synapse'), /^✅/);
  });

  it('without homeserver.admin_token_file it is a ❌ that says why the appservice token cannot work and how to get a token', async () => {
    const config = JSON.parse(await readFile(s.steward.configPath, 'utf8')) as Record<string, Record<string, unknown>>;
    delete config.homeserver!.admin_token_file;
    const file = path.join(s.steward.dir, 'no-token.yaml');
    await writeFile(file, JSON.stringify({ ...config, storage: { ...config.storage, database: path.join(s.steward.dir, 'no-token.db') } }));
    const run = await runCli(['doctor', '-c', file, '-r', s.steward.registrationPath]);
    assert.equal(run.code, 1);
    assert.match(line(run.stdout, 'Admin API rights'), /^❌ Synapse delegates authentication to MAS .*the appservice token can never use the admin API/);
    assert.match(run.stdout, /fix: give Steward an admin-scoped token: .*mas-cli manage issue-compatibility-token/s);
  });
});
