import { resolve } from 'node:path';
import type { ConfigReader } from '../config/reader.ts';
import { parseSchedule, SCHEDULE_EXPECT, type DailySchedule } from './schedule.ts';

/** The `archive:` section. */
export interface ArchiveConfig {
  /** Default output folder of `archive`. */
  readonly out: string;
  /** When `steward run` starts the archive by itself; absent: only on command. */
  readonly schedule: DailySchedule | undefined;
  readonly scheduleText: string | undefined;
  /** Download media too (the views do it). */
  readonly media: boolean;
  /** Rooms read at once. */
  readonly concurrency: number;
  /** Events per admin API page (Synapse caps it at 1000). */
  readonly pageSize: number;
  /** Synapse's homeserver.yaml, to read redaction_retention_period. */
  readonly synapseConfig: string | undefined;
  /** Media larger than this many MiB are not downloaded (a per-item failure says so). */
  readonly mediaMaxMb: number;
}

export function parseArchiveConfig(r: ConfigReader, raw: unknown, baseDir: string, defaultConcurrency: number): ArchiveConfig {
  const ar = r.section(raw, 'archive', ['out', 'schedule', 'media', 'concurrency', 'page_size', 'synapse_config', 'media_max_mb']);
  const scheduleText = r.optionalString(ar, 'archive', 'schedule', { pattern: /^daily ([01]\d|2[0-3]):([0-5]\d)$/, expect: SCHEDULE_EXPECT });
  const synapseConfig = r.optionalString(ar, 'archive', 'synapse_config');
  return {
    out: resolve(baseDir, r.string(ar, 'archive', 'out', { default: './archive' })),
    schedule: scheduleText === undefined ? undefined : parseSchedule(scheduleText),
    scheduleText,
    media: r.boolean(ar, 'archive', 'media', false),
    concurrency: r.integer(ar, 'archive', 'concurrency', { default: defaultConcurrency, min: 1, max: 64 }),
    pageSize: r.integer(ar, 'archive', 'page_size', { default: 1000, min: 1, max: 1000 }),
    synapseConfig: synapseConfig === undefined ? undefined : resolve(baseDir, synapseConfig),
    mediaMaxMb: r.integer(ar, 'archive', 'media_max_mb', { default: 100, min: 1, max: 1_000_000 }),
  };
}
