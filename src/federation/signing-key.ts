import { readFile, stat } from "node:fs/promises";
import { inspect } from "node:util";
import type { KeyObject } from "node:crypto";
import { errorMessage, fail, ok } from "../util/result.ts";
import type { Result } from "../util/result.ts";
import { decodeBase64, encodeBase64 } from "./base64.ts";
import { privateKeyFromSeed, publicKeyOf } from "./ed25519.ts";

/** Synapse's ed25519 signing key. Printing, logging or serialising it never shows the seed. */
export interface SigningKey {
  /** `ed25519:<version>`, e.g. `ed25519:a_AbCd`. */
  readonly keyId: string;
  readonly seed: Uint8Array;
  readonly publicKey: Uint8Array;
  /** The private key as Node's crypto holds it (OpenSSL never exposes it in output). */
  readonly privateKey: KeyObject;
}

export interface LoadedSigningKey {
  readonly key: SigningKey;
  /** Non-fatal findings worth telling the admin, e.g. a file readable by other users. */
  readonly warnings: readonly string[];
}

// The spec's key version grammar (server keys definition): [a-zA-Z0-9_].
const KEY_VERSION = /^[A-Za-z0-9_]+$/;
const SEED_BYTES = 32;

/**
 * The secret halves live in private fields behind getters, so they are not own enumerable
 * properties: JSON.stringify, object spread, pino and util.inspect all miss them even
 * before toJSON / inspect.custom replace the output.
 */
class Ed25519SigningKey implements SigningKey {
  readonly keyId: string;
  readonly publicKey: Uint8Array;
  readonly #seed: Uint8Array;
  readonly #privateKey: KeyObject;

  constructor(version: string, seed: Uint8Array) {
    this.#privateKey = privateKeyFromSeed(seed);
    this.keyId = `ed25519:${version}`;
    this.publicKey = publicKeyOf(this.#privateKey);
    this.#seed = Uint8Array.from(seed);
    Object.freeze(this);
  }

  get seed(): Uint8Array {
    return this.#seed;
  }

  get privateKey(): KeyObject {
    return this.#privateKey;
  }

  toJSON(): Record<string, string> {
    return { keyId: this.keyId, publicKey: encodeBase64(this.publicKey), seed: "[redacted]" };
  }

  toString(): string {
    return `SigningKey(${this.keyId}, public ${encodeBase64(this.publicKey)}, seed [redacted])`;
  }

  [inspect.custom](): string {
    return this.toString();
  }
}

/** Builds a key from a raw 32-byte seed; `version` is the part after `ed25519:`. */
export function signingKeyFromSeed(version: string, seed: Uint8Array): Result<SigningKey> {
  if (!KEY_VERSION.test(version)) {
    return fail("E_SIGNING_KEY_MALFORMED", "The signing key version may only contain letters, digits and _.");
  }
  if (seed.length !== SEED_BYTES) {
    return fail("E_SIGNING_KEY_MALFORMED", `An ed25519 seed must be ${SEED_BYTES} bytes, got ${seed.length}.`);
  }
  return ok(new Ed25519SigningKey(version, seed));
}

export function publicKeyBase64(key: SigningKey): string {
  return encodeBase64(key.publicKey);
}

/**
 * Parses a Synapse signing key file the way Synapse does: blank lines are skipped and
 * every other line must be `<algorithm> <version> <base64 seed>`. Synapse has no
 * comment syntax, so a `#` line is refused rather than accepting a file Synapse cannot
 * start with. Messages name the line but never echo it: it carries the seed.
 */
export function parseSigningKeys(text: string): Result<SigningKey[]> {
  const keys: SigningKey[] = [];
  const lines = text.split(/\r\n|\r|\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === "") continue;
    const parsed = parseKeyLine(line);
    if (!parsed.ok) {
      const human = `Signing key file, line ${i + 1}: ${parsed.error.human}`;
      return fail("E_SIGNING_KEY_MALFORMED", human);
    }
    keys.push(parsed.value);
  }
  if (keys.length === 0) return fail("E_SIGNING_KEY_MALFORMED", "The signing key file holds no key.");
  return ok(keys);
}

/** The key Synapse signs with: the first one in the file. */
export function parseSigningKey(text: string): Result<SigningKey> {
  const keys = parseSigningKeys(text);
  return keys.ok ? ok(keys.value[0]!) : keys;
}

function parseKeyLine(line: string): Result<SigningKey> {
  if (line.trimStart().startsWith("#")) {
    return fail("E_SIGNING_KEY_MALFORMED", "comments are not allowed (Synapse cannot read them).");
  }
  const fields = line.trim().split(/\s+/);
  if (fields.length !== 3) {
    return fail("E_SIGNING_KEY_MALFORMED", `expected "ed25519 <version> <seed>", found ${fields.length} fields.`);
  }
  const [algorithm, version, seedText] = fields as [string, string, string];
  if (algorithm !== "ed25519") {
    return fail("E_SIGNING_KEY_MALFORMED", "only ed25519 keys are supported.");
  }
  const seed = decodeBase64(seedText);
  if (!seed.ok) return fail("E_SIGNING_KEY_MALFORMED", "the seed is not valid base64.");
  return signingKeyFromSeed(version, seed.value);
}

/** Reads Synapse's signing key file, e.g. `/data/<server>.signing.key`. */
export async function loadSigningKey(path: string): Promise<Result<LoadedSigningKey>> {
  let text: string;
  let mode: number;
  try {
    mode = (await stat(path)).mode;
    text = await readFile(path, "utf8");
  } catch (err) {
    return readFailure(path, err);
  }
  const key = parseSigningKey(text);
  if (!key.ok) {
    const human = `${key.error.human} (${path})`;
    return fail(key.error.code, human);
  }
  const warnings: string[] = [];
  if ((mode & 0o077) !== 0) {
    warnings.push(
      `Signing key file ${path} has mode ${(mode & 0o777).toString(8)}: other users can read Synapse's ` +
        "private key. Restrict it to its owner (chmod 600).",
    );
  }
  return ok({ key: key.value, warnings });
}

function readFailure(path: string, err: unknown): Result<never> {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOENT") {
    return fail("E_SIGNING_KEY_MISSING", `Signing key file ${path} does not exist.`);
  }
  if (code === "EISDIR") {
    return fail("E_SIGNING_KEY_UNREADABLE", `Signing key path ${path} is a directory, not a file.`);
  }
  if (code === "EACCES" || code === "EPERM") {
    return fail("E_SIGNING_KEY_UNREADABLE", `No permission to read signing key file ${path}.`);
  }
  return fail("E_SIGNING_KEY_UNREADABLE", `Cannot read signing key file ${path}.`, `cannot read ${path}: ${errorMessage(err)}`);
}
