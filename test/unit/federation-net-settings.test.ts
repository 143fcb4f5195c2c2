import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { parseConfig } from "../../src/config/config.ts";
import type { StewardConfig } from "../../src/config/config.ts";
import { loadFederationSettings } from "../../src/federation/federation-settings.ts";
import { encodeBase64 } from "../../src/federation/index.ts";
import type { Result } from "../../src/util/result.ts";

const BASE = "/srv/steward";
const minimal = () => ({
  homeserver: { url: "http://127.0.0.1:8008", server_name: "example.org" },
  admin_room: { admins: ["@alice:example.org"] },
});

function value(result: Result<StewardConfig>): StewardConfig {
  if (!result.ok) assert.fail(`expected a valid config, got: ${result.error.human}`);
  return result.value;
}

function problems(result: Result<StewardConfig>): string[] {
  if (result.ok) assert.fail("expected the config to be refused");
  return result.error.human.split("\n").slice(1).map((l) => l.replace(/^- /, ""));
}

describe("config: federation section", () => {
  it("has safe defaults when absent", () => {
    assert.deepEqual(value(parseConfig(minimal(), BASE)).federation, {
      signingKeyPath: undefined,
      addressAllowlist: [],
      caFile: undefined,
      insecureSkipTlsVerify: false,
      notary: undefined,
      timeoutSeconds: 30,
      maxRetries: 2,
    });
  });

  it("reads every key, resolving paths against the config folder", () => {
    const config = value(
      parseConfig(
        {
          ...minimal(),
          federation: {
            signing_key_path: "keys/signing.key",
            address_allowlist: ["127.0.0.0/8", "::1/128", "10.0.0.5"],
            ca_file: "/etc/ssl/rig.pem",
            insecure_skip_tls_verify: true,
            notary: "matrix.org",
            timeout_seconds: 5,
            max_retries: 0,
          },
        },
        BASE,
      ),
    );
    assert.deepEqual(config.federation, {
      signingKeyPath: "/srv/steward/keys/signing.key",
      addressAllowlist: ["127.0.0.0/8", "::1/128", "10.0.0.5"],
      caFile: "/etc/ssl/rig.pem",
      insecureSkipTlsVerify: true,
      notary: "matrix.org",
      timeoutSeconds: 5,
      maxRetries: 0,
    });
  });

  it("names every bad key", () => {
    const list = problems(
      parseConfig(
        {
          ...minimal(),
          federation: {
            address_allowlist: ["127.0.0.0/8", "localhost", "10.0.0.0/40"],
            insecure_skip_tls_verify: "yes",
            notary: "not a server",
            timeout_seconds: 0,
            signing_key_pat: "x",
          },
        },
        BASE,
      ),
    );
    assert.deepEqual(list, [
      "federation.signing_key_pat: unknown key (did you mean 'signing_key_path'?)",
      'federation.address_allowlist[1]: expected a CIDR such as 127.0.0.0/8 or ::1/128, got "localhost"',
      'federation.address_allowlist[2]: expected a CIDR such as 127.0.0.0/8 or ::1/128, got "10.0.0.0/40"',
      'federation.insecure_skip_tls_verify: expected true or false, got "yes"',
      'federation.notary: expected a server name such as matrix.org, got "not a server"',
      "federation.timeout_seconds: expected a whole number from 1 to 600, got number 0",
    ]);
  });
});

describe("loadFederationSettings", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "steward-fedsettings-"));
    await writeFile(join(dir, "signing.key"), `ed25519 a_abcd ${encodeBase64(new Uint8Array(32).fill(5))}\n`, { mode: 0o600 });
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("fails with a clear message when no signing key is configured", async () => {
    const result = await loadFederationSettings(value(parseConfig(minimal(), dir)));
    assert.equal(result.ok, false);
    if (!result.ok) {
      assert.equal(result.error.code, "E_NO_SIGNING_KEY");
      assert.match(result.error.human, /federation\.signing_key_path/);
    }
  });

  it("loads the key and maps the config to settings", async () => {
    const config = value(
      parseConfig({ ...minimal(), federation: { signing_key_path: "signing.key", address_allowlist: ["127.0.0.0/8"], timeout_seconds: 7, notary: "notary.example" } }, dir),
    );
    const result = await loadFederationSettings(config);
    if (!result.ok) assert.fail(result.error.log);
    const { settings, warnings } = result.value;
    assert.equal(settings.serverName, "example.org");
    assert.equal(settings.signingKey.keyId, "ed25519:a_abcd");
    assert.deepEqual(settings.allowlist, ["127.0.0.0/8"]);
    assert.equal(settings.timeoutMs, 7000);
    assert.equal(settings.maxRetries, 2);
    assert.equal(settings.notary, "notary.example");
    assert.equal(settings.insecureSkipTlsVerify, false);
    assert.deepEqual(warnings, []);
  });

  it("passes a missing key file through as the signing key's own failure", async () => {
    const config = value(parseConfig({ ...minimal(), federation: { signing_key_path: "absent.key" } }, dir));
    const result = await loadFederationSettings(config);
    assert.equal(result.ok ? "" : result.error.code, "E_SIGNING_KEY_MISSING");
  });
});
