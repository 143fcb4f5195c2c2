// Part (a) of bench/federation: Ed25519 with tweetnacl against Node's built-in (node:crypto,
// OpenSSL), on the same realistic events and the same key (one seed). Steward signs and verifies
// through node:crypto (src/federation/ed25519.ts); the tweetnacl column runs the very same path
// (content hash, redaction, canonical JSON, reference hash: Steward's own functions) with the
// signature made or checked by tweetnacl instead, so the difference is the primitive alone.
import nacl from 'tweetnacl';
import {
  checkContentHash,
  computeEventId,
  contentHash,
  decodeBase64,
  encodeBase64,
  hashAndSignEvent,
  redactEvent,
  signedBytes,
  verifyEvent,
} from '../../src/federation/index.ts';
import type { JsonObject, KeyLookup, RoomVersion, SigningKey } from '../../src/federation/index.ts';
import { signDetached, verifyDetached } from '../../src/federation/ed25519.ts';
import { ok } from '../../src/util/result.ts';

/** A deterministic mix of what rooms carry: messages, members, reactions, state, big power levels. */
export function realisticEvents(n: number, roomId: string, server: string): JsonObject[] {
  let seed = 42;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed / 2 ** 31;
  };
  const words = 'the quick brown fox jumps over a lazy dog while matrix servers federate events across the world'.split(' ');
  const text = (min: number, max: number): string => {
    const out: string[] = [];
    const len = min + Math.floor(rand() * (max - min));
    while (out.join(' ').length < len) out.push(words[Math.floor(rand() * words.length)]!);
    return out.join(' ');
  };
  const hashId = (): string => `$${Buffer.from(Array.from({ length: 32 }, () => Math.floor(rand() * 256))).toString('base64url')}`;
  const events: JsonObject[] = [];
  for (let i = 0; i < n; i++) {
    const user = `@user${Math.floor(rand() * 500)}:${server}`;
    const base: JsonObject = {
      room_id: roomId,
      sender: user,
      origin_server_ts: 1_750_000_000_000 + i * 1000,
      depth: 10 + i,
      prev_events: rand() < 0.9 ? [hashId()] : [hashId(), hashId()],
      auth_events: [hashId(), hashId(), hashId()],
    };
    const r = rand();
    let event: JsonObject;
    if (r < 0.5) {
      const body = text(20, 400);
      event = { ...base, type: 'm.room.message', content: rand() < 0.3 ? { msgtype: 'm.text', body, format: 'org.matrix.custom.html', formatted_body: `<p>${body}</p>` } : { msgtype: 'm.text', body } };
    } else if (r < 0.75) {
      event = { ...base, type: 'm.room.member', state_key: user, content: { membership: 'join', displayname: text(5, 24), avatar_url: `mxc://${server}/${hashId().slice(1, 25)}` } };
    } else if (r < 0.85) {
      event = { ...base, type: 'm.reaction', content: { 'm.relates_to': { rel_type: 'm.annotation', event_id: hashId(), key: '👍' } } };
    } else if (r < 0.95) {
      event = { ...base, type: rand() < 0.5 ? 'm.room.topic' : 'm.room.name', state_key: '', content: { topic: text(10, 120), name: text(5, 30) } };
    } else {
      const users: Record<string, number> = {};
      for (let u = 0; u < 50; u++) users[`@mod${u}:${server}`] = 50;
      event = { ...base, type: 'm.room.power_levels', state_key: '', content: { users, users_default: 0, events: { 'm.room.name': 50, 'm.room.power_levels': 100 }, events_default: 0, state_default: 50, ban: 50, kick: 50, redact: 50, invite: 0 } };
    }
    events.push(event);
  }
  return events;
}

/** Steward's hashAndSignEvent (content hash, redaction, canonical JSON) with tweetnacl making the signature. */
function hashAndSignEventNacl(event: JsonObject, version: RoomVersion, serverName: string, keyId: string, secretKey: Uint8Array): JsonObject {
  const hashed: JsonObject = { ...event, hashes: { sha256: contentHash(event) } };
  const signature = encodeBase64(nacl.sign.detached(signedBytes(redactEvent(hashed, version)), secretKey));
  return { ...hashed, signatures: { [serverName]: { [keyId]: signature } } };
}

/**
 * The work verifyEvent does for a v3+ event signed by one server (id from the reference hash,
 * signature over the redacted event, content hash), with tweetnacl checking the signature. It
 * skips verifyEvent's shape checks and key lookup, which cost microseconds.
 */
function verifyEventNacl(pdu: JsonObject, version: RoomVersion, serverName: string, keyId: string, publicKey: Uint8Array): boolean {
  const id = computeEventId(pdu, version);
  if (!id.ok) return false;
  const redacted = redactEvent(pdu, version);
  const sig = decodeBase64(((pdu['signatures'] as JsonObject)[serverName] as Record<string, string>)[keyId]!);
  if (!sig.ok || !nacl.sign.detached.verify(signedBytes(redacted), sig.value, publicKey)) return false;
  checkContentHash(pdu);
  return true;
}

export interface Rate {
  readonly label: string;
  readonly opsPerSecond: number;
  readonly microsPerOp: number;
}

/**
 * Times `pass(items)` over all `n` items `passes` times, after a warm-up over the first few
 * (tweetnacl takes milliseconds per operation: a full warm-up pass would double the bench);
 * the median pass sets the rate. Rates are per CPU second of this thread (user + system): a busy
 * machine disturbs that far less than wall time, and V8's helper threads (parallel scavenges of
 * tweetnacl's garbage) are left out, so it is what the operation itself costs on one core.
 */
async function measure<T>(label: string, items: readonly T[], passes: number, pass: (items: readonly T[]) => Promise<void> | void): Promise<Rate> {
  await pass(items.slice(0, 100));
  const times: number[] = [];
  for (let i = 0; i < passes; i++) {
    const before = process.threadCpuUsage();
    await pass(items);
    const used = process.threadCpuUsage(before);
    times.push((used.user + used.system) / 1000);
  }
  times.sort((a, b) => a - b);
  const ms = times[Math.floor(times.length / 2)]!;
  return { label, opsPerSecond: (items.length * 1000) / ms, microsPerOp: (ms * 1000) / items.length };
}

export interface CryptoResults {
  readonly events: number;
  readonly signPrimitive: [Rate, Rate];
  readonly verifyPrimitive: [Rate, Rate];
  readonly signPath: [Rate, Rate];
  readonly verifyPath: [Rate, Rate];
  readonly canonicalOnly: Rate;
  /** Both libraries made byte-identical signatures for every event, and each verified the other's. */
  readonly identical: boolean;
}

export async function runCryptoBench(opts: { events: number; passes: number; key: SigningKey; version: RoomVersion; serverName: string; roomId: string; say: (m: string) => void }): Promise<CryptoResults> {
  const { key, version, serverName } = opts;
  const pair = nacl.sign.keyPair.fromSeed(key.seed);
  if (Buffer.compare(Buffer.from(pair.publicKey), Buffer.from(key.publicKey)) !== 0) throw new Error('tweetnacl derived another public key from the seed');
  const events = realisticEvents(opts.events, opts.roomId, serverName);
  const n = events.length;
  const P = opts.passes;
  const idx = events.map((_, i) => i);
  opts.say(`  crypto: ${n} events, ${P} timed pass(es) per measurement; tweetnacl takes a while`);
  // The sign paths first: their outputs are the inputs of the rest.
  let signedNacl: JsonObject[] = [];
  let signedNode: JsonObject[] = [];
  const signPath: [Rate, Rate] = [
    await measure('sign path, tweetnacl', events, P, (es) => { signedNacl = es.map((e) => hashAndSignEventNacl(e, version, serverName, key.keyId, pair.secretKey)); }),
    await measure('hashAndSignEvent (Steward, node:crypto)', events, P, (es) => { signedNode = es.map((e) => hashAndSignEvent(e, version, serverName, key)); }),
  ];
  // Ed25519 is deterministic: both must produce the very same events; each library must accept the other's.
  const identical = signedNacl.length === n && signedNacl.every((e, i) => JSON.stringify(e) === JSON.stringify(signedNode[i]));
  if (!identical) throw new Error('tweetnacl and node:crypto signatures differ');
  const bytes = signedNacl.map((e) => signedBytes(redactEvent(e, version)));
  const sigs = signedNacl.map((e) => decodeBase64(((e['signatures'] as JsonObject)[serverName] as Record<string, string>)[key.keyId]!)).map((r) => (r.ok ? r.value : new Uint8Array()));
  const keys: KeyLookup = async (server, keyId) => (server === serverName && keyId === key.keyId ? ok(key.publicKey) : { ok: false, error: { code: 'E_UNKNOWN_KEY', human: 'unknown', log: 'unknown' } });
  for (let i = 0; i < Math.min(n, 50); i++) {
    if (!nacl.sign.detached.verify(bytes[i]!, sigs[i]!, key.publicKey)) throw new Error('tweetnacl rejects a node:crypto signature');
    if (!verifyDetached(bytes[i]!, sigs[i]!, key.publicKey)) throw new Error('node:crypto rejects a tweetnacl signature');
  }
  const signPrimitive: [Rate, Rate] = [
    await measure('tweetnacl sign', bytes, P, (bs) => { for (const b of bs) nacl.sign.detached(b, pair.secretKey); }),
    await measure('node:crypto sign', bytes, P, (bs) => { for (const b of bs) signDetached(b, key.privateKey); }),
  ];
  const verifyPrimitive: [Rate, Rate] = [
    await measure('tweetnacl verify', idx, P, (is) => { for (const i of is) nacl.sign.detached.verify(bytes[i]!, sigs[i]!, key.publicKey); }),
    await measure('node:crypto verify', idx, P, (is) => { for (const i of is) verifyDetached(bytes[i]!, sigs[i]!, key.publicKey); }),
  ];
  const canonicalOnly = await measure('hash + redact + canonical JSON (no signature)', events, P, (es) => { for (const e of es) signedBytes(redactEvent({ ...e, hashes: { sha256: contentHash(e) } }, version)); });
  const verifyPath: [Rate, Rate] = [
    await measure('verify path, tweetnacl', signedNacl, P, (es) => { for (const e of es) if (!verifyEventNacl(e, version, serverName, key.keyId, key.publicKey)) throw new Error('tweetnacl verify failed'); }),
    await measure('verifyEvent (Steward, node:crypto)', signedNacl, P, async (es) => { for (const e of es) if (!(await verifyEvent(e, version.id, keys)).ok) throw new Error('verifyEvent failed'); }),
  ];
  return { events: n, signPrimitive, verifyPrimitive, signPath, verifyPath, canonicalOnly, identical };
}
