import type { Result } from '../util/result.ts';
import type { DirectoryClient, DirectoryFailure } from './directory.ts';
import type { LinkedStore, LocalLink } from './store.ts';

export type LinkSource = 'directory' | 'local';

export interface LinkedAccount {
  readonly userId: string;
  readonly sources: readonly LinkSource[];
}

export interface Group {
  /** The other accounts of the person, never the asked ID itself. */
  readonly others: readonly LinkedAccount[];
  /** Local links that connect them (for !links). */
  readonly localLinks: readonly LocalLink[];
}

/**
 * Who else a Matrix ID belongs with: the directory's answer for it plus everything connected to it
 * by local links. When a directory is configured and cannot answer, the whole lookup fails, so a
 * broken directory means "mirror nothing for this user" rather than "mirror on half the facts".
 */
export class GroupResolver {
  private readonly store: LinkedStore;
  private readonly directory: DirectoryClient | undefined;

  constructor(store: LinkedStore, directory: DirectoryClient | undefined) {
    this.store = store;
    this.directory = directory;
  }

  get hasDirectory(): boolean {
    return this.directory !== undefined;
  }

  /** Cheap and synchronous: could this user have linked accounts at all? (intake filter) */
  mayBeLinked(userId: string): boolean {
    return this.directory !== undefined || this.store.hasAnyLocalLink(userId);
  }

  async group(userId: string): Promise<Result<Group, DirectoryFailure>> {
    const local = this.store.localComponent(userId);
    const sources = new Map<string, Set<LinkSource>>();
    const add = (u: string, s: LinkSource): void => {
      if (u === userId) return;
      let set = sources.get(u);
      if (!set) sources.set(u, (set = new Set()));
      set.add(s);
    };
    for (const u of local.members) add(u, 'local');
    if (this.directory) {
      const answer = await this.directory.lookup(userId);
      if (!answer.ok) return answer;
      for (const u of answer.value) add(u, 'directory');
    }
    const others = [...sources].map(([u, s]) => ({ userId: u, sources: [...s].sort() })).sort((a, b) => a.userId.localeCompare(b.userId));
    return { ok: true, value: { others, localLinks: local.links } };
  }
}
