import type { EventHandler } from '../appservice/event-router.ts';
import type { StewardConfig } from '../config/config.ts';
import { AddressGuard } from '../federation/address-guard.ts';
import type { ClientApi } from '../homeserver/client-api.ts';
import type { Logger } from '../log.ts';
import type { Db } from '../store/database.ts';
import { catchUpReceipts, type CatchUpSummary } from './catch-up.ts';
import { DirectoryClient } from './directory.ts';
import { GroupResolver } from './groups.ts';
import { InviteMirror } from './invites.ts';
import { MembershipCache } from './membership-cache.ts';
import type { LinkedAccountsConfig } from './linked-config.ts';
import { serverOf } from './mxid.ts';
import { ReceiptMirror } from './receipts.ts';
import { LinkedStore } from './store.ts';

/** The linked-accounts capability: its store, directory and group resolution, handlers and catch-up. */
export class LinkedAccounts {
  readonly config: LinkedAccountsConfig;
  readonly serverName: string;
  readonly store: LinkedStore;
  readonly directory: DirectoryClient | undefined;
  readonly resolver: GroupResolver;
  /** The root logger: each part adds its own module name. */
  private readonly log: Logger;
  private invites: InviteMirror | undefined;
  private receipts: ReceiptMirror | undefined;

  constructor(db: Db, config: StewardConfig, log: Logger) {
    this.config = config.linkedAccounts;
    this.serverName = config.homeserver.serverName;
    this.log = log;
    this.store = new LinkedStore(db);
    const dir = this.config.directory;
    if (dir) {
      // The config reader has already checked every CIDR, so this cannot fail on a loaded config.
      const guard = AddressGuard.create(dir.addressAllowlist);
      if (!guard.ok) throw new Error(`linked_accounts.directory.address_allowlist: ${guard.error.human}`);
      this.directory = new DirectoryClient({
        config: dir,
        guard: guard.value,
        log,
        bump: (name) => this.store.bump(name),
        remember: (userId, members) => this.store.saveDirectoryAnswer(userId, members),
      });
    } else {
      this.directory = undefined;
    }
    this.resolver = new GroupResolver(this.store, this.directory);
  }

  isLocal(userId: string): boolean {
    return serverOf(userId) === this.serverName;
  }

  /** The event handlers for the router; rooms in `excludedRooms` (the admin rooms) are left alone. */
  handlers(deps: { client: ClientApi; botUserId: string; excludedRooms: readonly string[] }): EventHandler[] {
    const membership = new MembershipCache(deps.client);
    const common = { serverName: this.serverName, botUserId: deps.botUserId, store: this.store, resolver: this.resolver, client: deps.client, membership, log: this.log };
    this.store.prune();
    const excluded = new Set(deps.excludedRooms);
    const invites = new InviteMirror({ ...common, config: this.config });
    this.invites = invites;
    const receipts = new ReceiptMirror(common);
    this.receipts = receipts;
    const guard = (h: EventHandler): EventHandler => ({
      name: h.name,
      wants: (event, kind) => !(event.room_id !== undefined && excluded.has(event.room_id)) && h.wants(event, kind),
      handle: (event, kind) => h.handle(event, kind),
    });
    return [guard(invites), guard(receipts)];
  }

  /** Lets background work (auto-joins being retried, receipts waiting for their event) finish or stop. */
  async stop(): Promise<void> {
    await Promise.all([this.invites?.stop(), this.receipts?.stop()]);
    this.store.flushCounters();
  }

  catchUp(deps: { client: ClientApi; botUserId: string; signal?: AbortSignal }): Promise<CatchUpSummary> {
    return catchUpReceipts({ ...deps, serverName: this.serverName, config: this.config, store: this.store, resolver: this.resolver, log: this.log });
  }
}
