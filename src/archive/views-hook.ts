import type { Failure, Result } from '../util/result.ts';
import type { ArchiveLine, ArchivedRoom } from './archive-line.ts';

/**
 * What the archive job calls after it has durably appended a room's new lines: the views built
 * from the JSONL (markdown per day, the SQLite index with full-text search, media). Views are
 * derived data: the job appends lines first, then calls this, so a crash between the two is
 * repaired on the next run (`rebuild` re-derives from the files).
 */
export interface ArchiveViews {
  /**
   * New lines of one room, in the order they were appended. With `appended` (where they went),
   * lines that continue exactly where the index stopped are indexed as given, not read back.
   * Per-item failures (a media download) are returned, not thrown.
   */
  roomAppended(room: ArchivedRoom, lines: readonly ArchiveLine[], signal: AbortSignal, appended?: readonly AppendedFile[]): Promise<Result<{ itemFailures: readonly { item: string; failure: Failure }[] }>>;
  /** A room's pass is over: its views can be finished now rather than at the end of the run. */
  roomFinished(room: ArchivedRoom): Promise<void>;
  /** Called once when a run has been through every room. */
  runFinished(): Promise<void>;
  close(): void;
}

/** One day file a page was appended to: its length before and after. */
export interface AppendedFile {
  readonly day: string;
  readonly from: number;
  readonly to: number;
}

export interface ArchiveViewsOptions {
  /** The archive's root folder (holds archive.sqlite, rooms/, media/). */
  readonly out: string;
  readonly media: boolean;
}

/** Until the views exist, the job writes only the JSONL. */
export const NO_VIEWS: ArchiveViews = {
  async roomAppended() {
    return { ok: true, value: { itemFailures: [] } };
  },
  async roomFinished() {},
  async runFinished() {},
  close() {},
};
