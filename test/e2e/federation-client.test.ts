// Steward speaking federation as hs1 (with hs1's own signing key) to two real Synapses:
// requests it signs are accepted by hs1 itself and by its peer hs2, a wrong key or a
// wrong destination is refused, hs2's keys are fetched and verified (directly and via
// hs1 as notary), and PDUs fetched from hs2 verify against them.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/log.ts';
import { FederationClient } from '../../src/federation/federation-client.ts';
import type { FederationFailure } from '../../src/federation/federation-client.ts';
import type { FederationSettings } from '../../src/federation/federation-settings.ts';
import type { Discovery } from '../../src/federation/discovery.ts';
import { loadSigningKey, signingKeyFromSeed, verifyEvent } from '../../src/federation/index.ts';
import type { SigningKey } from '../../src/federation/index.ts';
import { ServerKeyStore } from '../../src/federation/server-keys.ts';
import { ok } from '../../src/util/result.ts';
import type { Failure, Result } from '../../src/util/result.ts';
import { MatrixTestClient } from '../rig/client.ts';
import { startFederatingPair } from '../rig/synapse.ts';
import type { RegisteredUser, SynapseInstance } from '../rig/synapse.ts';

const log = createLogger({ level: process.env['STEWARD_TEST_LOG'] ?? 'silent', fd: 2 });

function unwrap<T>(result: Result<T, Failure>): T {
  if (!result.ok) assert.fail(`expected ok, got ${result.error.code}: ${result.error.log}`);
  return result.value;
}

function failed(result: Result<unknown, FederationFailure>): FederationFailure {
  if (result.ok) assert.fail(`expected a failure, got ${JSON.stringify(result.value).slice(0, 300)}`);
  return result.error;
}

const enc = encodeURIComponent;

describe('federation client against two real Synapses', () => {
  let hs1: SynapseInstance;
  let hs2: SynapseInstance;
  let alice: RegisteredUser;
  let bob: RegisteredUser;
  let hs1Key: SigningKey;
  let hs2Key: SigningKey;
  let tmp: string;
  let settings: FederationSettings;
  let fed: FederationClient;
  const clients: FederationClient[] = [];

  async function client(overrides: Partial<FederationSettings> = {}, discovery?: Discovery): Promise<FederationClient> {
    const created = unwrap(await FederationClient.create({ ...settings, ...overrides }, { log, ...(discovery ? { discovery } : {}) }));
    clients.push(created);
    return created;
  }

  before(async () => {
    [hs1, hs2] = await startFederatingPair();
    [alice, bob] = await Promise.all([
      hs1.registerUser('alice', { displayname: 'Alice One' }),
      hs2.registerUser('bob', { displayname: 'Bob Two' }),
    ]);
    hs1Key = unwrap(await loadSigningKey(hs1.signingKeyPath)).key;
    hs2Key = unwrap(await loadSigningKey(hs2.signingKeyPath)).key;
    // Both rig certificates as the CA file: verification stays on.
    tmp = await mkdtemp(path.join(os.tmpdir(), 'steward-fed-e2e-'));
    const caFile = path.join(tmp, 'rig-ca.pem');
    const certs = await Promise.all([hs1, hs2].map((hs) => readFile(path.join(hs.dir, 'tls.crt'), 'utf8')));
    await writeFile(caFile, certs.join('\n'));
    settings = {
      serverName: hs1.serverName,
      signingKey: hs1Key,
      allowlist: ['127.0.0.0/8', '::1/128'],
      caFile,
      insecureSkipTlsVerify: false,
      timeoutMs: 20_000,
      maxRetries: 1,
    };
    fed = await client();
  });

  after(async () => {
    for (const c of clients) c.close();
    await Promise.all([hs1?.cleanup(), hs2?.cleanup()]);
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('reaches both servers, certificates verified against the rig CA', async () => {
    for (const hs of [hs1, hs2]) {
      const version = unwrap(await fed.request<{ server: { name: string } }>(hs.serverName, 'GET', '/_matrix/federation/v1/version'));
      assert.equal(version.server.name, 'Synapse');
    }
    const resolved = unwrap(await fed.discovery.resolve(hs2.serverName));
    assert.equal(resolved.route, 'explicit-port');
    assert.equal(resolved.certificateName, 'localhost');
  });

  it('has a signed request accepted by the peer and by our own server', async () => {
    const remote = unwrap(
      await fed.request<{ displayname: string }>(hs2.serverName, 'GET', `/_matrix/federation/v1/query/profile?user_id=${enc(bob.userId)}&field=displayname`),
    );
    assert.deepEqual(remote, { displayname: 'Bob Two' });
    const own = unwrap(
      await fed.request<{ displayname: string }>(hs1.serverName, 'GET', `/_matrix/federation/v1/query/profile?user_id=${enc(alice.userId)}&field=displayname`),
    );
    assert.deepEqual(own, { displayname: 'Alice One' });
  });

  it('is refused (401 M_UNAUTHORIZED) when signed with a wrong key', async () => {
    const impostor = unwrap(signingKeyFromSeed(hs1Key.keyId.slice('ed25519:'.length), new Uint8Array(32).fill(42)));
    const unknownKeyId = unwrap(signingKeyFromSeed('a_nope', new Uint8Array(32).fill(43)));
    for (const signingKey of [impostor, unknownKeyId]) {
      const wrong = await client({ signingKey });
      for (const hs of [hs2, hs1]) {
        const error = failed(
          await wrong.request(hs.serverName, 'GET', `/_matrix/federation/v1/query/profile?user_id=${enc(bob.userId)}&field=displayname`),
        );
        assert.equal(error.status, 401, `${signingKey.keyId} → ${hs.name}: ${error.log}`);
        assert.equal(error.errcode, 'M_UNAUTHORIZED');
        assert.match(error.human, signingKey === impostor ? /Invalid signature/ : /Failed to find any key/);
      }
    }
  });

  it('is refused (401) when the request signed for one server reaches another', async () => {
    const hs2Port = Number(hs2.serverName.split(':')[1]);
    const misdirect: Discovery = {
      resolve: async (serverName) =>
        ok({
          serverName,
          route: 'explicit-port',
          targets: [{ address: '127.0.0.1', port: hs2Port }],
          hostHeader: hs2.serverName,
          certificateName: 'localhost',
          steps: ['test: deliver everything to hs2'],
        }),
      forget: () => {},
    };
    const misdirected = await client({}, misdirect);
    // Signed for "destination = hs1", delivered to hs2.
    const error = failed(
      await misdirected.request(hs1.serverName, 'GET', `/_matrix/federation/v1/query/profile?user_id=${enc(bob.userId)}&field=displayname`),
    );
    assert.equal(error.status, 401, error.log);
    assert.equal(error.errcode, 'M_UNAUTHORIZED');
    assert.match(error.human, /Destination mismatch/);
  });

  it('fetches and verifies the server keys of hs2, directly and through hs1 as notary', async () => {
    const keys = new ServerKeyStore(fed, settings, { log });
    const listed = unwrap(await keys.keysOf(hs2.serverName));
    const current = listed.find((k) => k.keyId === hs2Key.keyId);
    assert.ok(current, `hs2's key ${hs2Key.keyId} is listed`);
    assert.deepEqual(current.publicKey, hs2Key.publicKey);
    assert.ok(current.validUntilTs > Date.now());
    assert.deepEqual(unwrap(await keys.lookup(hs2.serverName, hs2Key.keyId, Date.now())), hs2Key.publicKey);

    const viaNotary = new ServerKeyStore(fed, { ...settings, notary: hs1.serverName }, { log });
    const relayed = unwrap(await viaNotary.fetchFromNotary(hs2.serverName, [hs2Key.keyId], Date.now()));
    assert.deepEqual(relayed.find((k) => k.keyId === hs2Key.keyId)?.publicKey, hs2Key.publicKey);
  });

  for (const roomVersion of ['1', '10', '12']) {
    it(`verifies PDUs fetched from hs2 in a room version ${roomVersion} room hs1 has joined`, async () => {
      const bobClient = new MatrixTestClient(hs2.clientUrl, bob.userId, bob.accessToken);
      const aliceClient = new MatrixTestClient(hs1.clientUrl, alice.userId, alice.accessToken);
      const roomId = await bobClient.createRoom({ preset: 'public_chat', room_version: roomVersion, name: `fed ${roomVersion}` });
      const messageId = await bobClient.sendText(roomId, `hello in v${roomVersion}`);
      const eventPath = (id: string) => `/_matrix/federation/v1/event/${enc(id)}`;

      // Not in the room yet: hs2 does not show hs1 the event.
      const before = failed(await fed.request(hs2.serverName, 'GET', eventPath(messageId)));
      assert.equal(before.status, 403, before.log);

      await aliceClient.join(roomId, [hs2.serverName]);
      const joined = await bobClient.waitForEvent(
        (ev, inRoom) => inRoom === roomId && ev.type === 'm.room.member' && ev.state_key === alice.userId && ev.content?.membership === 'join',
        { fromStart: true },
      );
      const aliceJoinId: string = joined.event.event_id;

      const keys = new ServerKeyStore(fed, settings, { log });
      for (const [eventId, signer] of [[messageId, hs2.serverName], [aliceJoinId, hs1.serverName]] as const) {
        const answer = unwrap(await fed.request<{ origin: string; pdus: Record<string, unknown>[] }>(hs2.serverName, 'GET', eventPath(eventId)));
        assert.equal(answer.origin, hs2.serverName);
        assert.equal(answer.pdus.length, 1);
        const pdu = answer.pdus[0]!;
        assert.ok(Object.keys((pdu['signatures'] ?? {}) as object).includes(signer));
        const verified = unwrap(await verifyEvent(pdu, roomVersion, keys.lookup, eventId));
        assert.equal(verified.eventId, eventId);
        assert.equal(verified.redacted, false);
        if (eventId === messageId) assert.equal((verified.event['content'] as { body: string }).body, `hello in v${roomVersion}`);

        // Tampering shows: altered content falls back to the redacted copy, an altered
        // signed field fails the signature (or, where ids are hashes, the id).
        const altered = await verifyEvent({ ...pdu, content: { ...(pdu['content'] as object), body: 'forged' } }, roomVersion, keys.lookup);
        if (altered.ok) assert.equal(altered.value.redacted, true);
        else assert.equal(altered.error.code, 'E_BAD_SIGNATURE');
        const moved = await verifyEvent({ ...pdu, origin_server_ts: (pdu['origin_server_ts'] as number) + 1 }, roomVersion, keys.lookup, eventId);
        assert.equal(moved.ok, false);
        if (!moved.ok) assert.ok(['E_BAD_SIGNATURE', 'E_EVENT_ID_MISMATCH'].includes(moved.error.code), moved.error.code);
      }
    });
  }
});
