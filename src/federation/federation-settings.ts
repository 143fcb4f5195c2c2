import type { StewardConfig } from "../config/config.ts";
import { fail, ok } from "../util/result.ts";
import type { Result } from "../util/result.ts";
import { loadSigningKey } from "./signing-key.ts";
import type { SigningKey } from "./signing-key.ts";

/** What the federation network layer (client, discovery, key store) is built from. */
export interface FederationSettings {
  /** Our server name: the origin of every request we sign. */
  readonly serverName: string;
  /** Synapse's own key: we speak as the homeserver. */
  readonly signingKey: SigningKey;
  /** CIDRs the address guard admits although they are loopback, private, …. */
  readonly allowlist: readonly string[];
  /** Extra CA certificates (PEM), trusted besides the system's. */
  readonly caFile?: string | undefined;
  /** Tests only: accept any certificate. Logged as a warning when on. */
  readonly insecureSkipTlsVerify: boolean;
  /** Server name of a notary asked for keys a server does not serve itself. */
  readonly notary?: string | undefined;
  /** Per attempt: connect, send and read the whole answer. */
  readonly timeoutMs: number;
  /** Further attempts after a 5xx, a timeout or a lost connection. */
  readonly maxRetries: number;
}

export interface LoadedFederationSettings {
  readonly settings: FederationSettings;
  /** Worth telling the admin, e.g. a signing key readable by others. */
  readonly warnings: readonly string[];
}

/**
 * Settings from the config, loading Synapse's signing key. Fails with
 * E_NO_SIGNING_KEY when `federation.signing_key_path` is not set, so commands that
 * speak federation can say exactly what is missing.
 */
export async function loadFederationSettings(config: StewardConfig): Promise<Result<LoadedFederationSettings>> {
  const fed = config.federation;
  if (fed.signingKeyPath === undefined) {
    return fail(
      "E_NO_SIGNING_KEY",
      "Federation needs Synapse's signing key: set federation.signing_key_path in the config to the homeserver's signing key file (signing_key_path in homeserver.yaml).",
    );
  }
  const loaded = await loadSigningKey(fed.signingKeyPath);
  if (!loaded.ok) return loaded;
  return ok({
    settings: {
      serverName: config.homeserver.serverName,
      signingKey: loaded.value.key,
      allowlist: fed.addressAllowlist,
      caFile: fed.caFile,
      insecureSkipTlsVerify: fed.insecureSkipTlsVerify,
      notary: fed.notary,
      timeoutMs: fed.timeoutSeconds * 1000,
      maxRetries: fed.maxRetries,
    },
    warnings: loaded.value.warnings,
  });
}
