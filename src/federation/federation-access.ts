import type { StewardConfig } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { ok, type Result } from '../util/result.ts';
import type { KeyLookup } from './event-verify.ts';
import { FederationClient } from './federation-client.ts';
import { loadFederationSettings } from './federation-settings.ts';
import type { PersistedServerKeys } from './persisted-keys.ts';
import type { SigningKey } from './signing-key.ts';
import { ServerKeyStore } from './server-keys.ts';

/** What commands and jobs that speak federation need: a signing client and verified server keys. */
export interface FederationAccess {
  readonly client: FederationClient;
  readonly keyStore: ServerKeyStore;
  readonly keys: KeyLookup;
  /** Synapse's own key, for the few events Steward signs as its server (a federated leave). */
  readonly signingKey?: SigningKey;
}

export interface FederationProvider {
  /** The shared client and key cache, created on first use; a failure (e.g. no signing key) is not kept. */
  get(): Promise<Result<FederationAccess>>;
  close(): void;
}

/**
 * One federation client and key cache per process, created only when a command needs them, so
 * Steward runs without a signing key until someone asks for federation.
 */
export interface FederationProviderExtras {
  /** Told the outcome of every federation request (metrics). */
  readonly onOutcome?: (outcome: string) => void;
  /** Verified server keys kept across restarts (src/federation/persisted-keys.ts). */
  readonly persisted?: PersistedServerKeys;
}

export function federationProvider(config: StewardConfig, log: Logger, userAgent: string, extras: FederationProviderExtras = {}): FederationProvider {
  const { onOutcome, persisted } = extras;
  let pending: Promise<Result<FederationAccess>> | null = null;
  let client: FederationClient | null = null;
  return {
    get() {
      pending ??= (async (): Promise<Result<FederationAccess>> => {
        const settings = await loadFederationSettings(config);
        if (!settings.ok) return settings;
        for (const warning of settings.value.warnings) log.warn({ module: 'federation' }, warning);
        const created = await FederationClient.create(settings.value.settings, { log, userAgent, ...(onOutcome ? { onOutcome } : {}) });
        if (!created.ok) return created;
        client = created.value;
        // Without a configured notary our own homeserver is one: it has keys of servers it heard from, even ones down now.
        const keySettings = { ...settings.value.settings, notary: settings.value.settings.notary ?? settings.value.settings.serverName };
        const keyStore = new ServerKeyStore(created.value, keySettings, { log, ...(persisted ? { persisted } : {}) });
        return ok({ client: created.value, keyStore, keys: keyStore.lookup, signingKey: settings.value.settings.signingKey });
      })();
      void pending.then((r) => {
        if (!r.ok) pending = null;
      });
      return pending;
    },
    close() {
      client?.close();
    },
  };
}
