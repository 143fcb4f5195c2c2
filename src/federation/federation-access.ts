import type { StewardConfig } from '../config/config.ts';
import type { Logger } from '../log.ts';
import { ok, type Result } from '../util/result.ts';
import type { KeyLookup } from './event-verify.ts';
import { FederationClient } from './federation-client.ts';
import { loadFederationSettings } from './federation-settings.ts';
import { ServerKeyStore } from './server-keys.ts';

/** What commands and jobs that speak federation need: a signing client and verified server keys. */
export interface FederationAccess {
  readonly client: FederationClient;
  readonly keyStore: ServerKeyStore;
  readonly keys: KeyLookup;
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
export function federationProvider(config: StewardConfig, log: Logger, userAgent: string, onOutcome?: (outcome: string) => void): FederationProvider {
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
        const keyStore = new ServerKeyStore(created.value, settings.value.settings, { log });
        return ok({ client: created.value, keyStore, keys: keyStore.lookup });
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
