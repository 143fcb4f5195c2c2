/**
 * One line of a room's day file (docs/dump-format.md, section 3): the contract between the
 * archive job that writes it, the views (markdown, index, media) built from it, and restore.
 */
export const ARCHIVE_FORMAT = 'steward.archive/1';
export const ARCHIVE_ROOM_FORMAT = 'steward.archive-room/1';

export interface ArchiveAnnotations {
  /** The admin API returned the event already stripped by a redaction. */
  readonly redacted?: true;
  /** The unredacted event as Synapse still held it (on the redacted event's line, or on the redaction's line for its target). */
  readonly original?: Record<string, unknown>;
  readonly original_missing?: 'purged' | 'unavailable';
  readonly original_error?: string;
  readonly soft_failed?: true;
  readonly policy_spammy?: true;
}

export interface ArchiveLine {
  readonly event_id: string;
  readonly room_id: string;
  readonly origin_server_ts: number;
  /** Federation format, exactly as Synapse's admin API returned it. */
  readonly event: Record<string, unknown>;
  readonly steward?: ArchiveAnnotations;
}

/** What the views need to know about the room a batch of new lines belongs to. */
export interface ArchivedRoom {
  readonly roomId: string;
  readonly roomVersion: string;
  /** Absolute folder of the room inside the archive (…/rooms/<encoded id>). */
  readonly dir: string;
}
