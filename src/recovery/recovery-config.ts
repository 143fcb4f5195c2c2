import { resolve } from 'node:path';
import type { ConfigReader } from '../config/reader.ts';
import { LOG_FORMATS, type LogFormat } from './log-parser.ts';

export type LogSourceConfig =
  | { readonly kind: 'file'; readonly path: string; readonly format: LogFormat; readonly startAt: 'end' | 'start' }
  | { readonly kind: 'command'; readonly argv: readonly string[]; readonly format: LogFormat }
  | { readonly kind: 'stdin'; readonly format: LogFormat };

/** The `recovery:` section: where to read Synapse's log, how to announce, how to pace rejoins. */
export interface RecoveryConfig {
  readonly logSources: readonly LogSourceConfig[];
  /** Default format of every source; a source may override it with its own `format`. */
  readonly logFormat: LogFormat;
  /** Least time between two lost-room announcements in the status room. */
  readonly announceIntervalSeconds: number;
  /** How often a followed file is checked for new lines and rotation. */
  readonly pollIntervalMs: number;
  /** Rooms worked on at once by a rejoin. */
  readonly roomConcurrency: number;
  /** Joins in flight at once, across all rooms of a rejoin. */
  readonly joinConcurrency: number;
  /** Least time between the starts of two joins (0: only the concurrency bounds them). */
  readonly joinIntervalMs: number;
  /** Where rejoin reports (JSON) are written. */
  readonly reports: string;
}

const SOURCE_KEYS = ['file', 'command', 'stdin', 'format', 'start_at'];
const FORMAT_EXPECT = `one of ${LOG_FORMATS.join(', ')}`;

/** A stable name for a source: the key of its saved position and status. */
export function sourceName(source: LogSourceConfig): string {
  switch (source.kind) {
    case 'file':
      return `file:${source.path}`;
    case 'command':
      return `command:${source.argv.join(' ')}`;
    case 'stdin':
      return 'stdin';
  }
}

function format(r: ConfigReader, obj: Record<string, unknown> | undefined, path: string, fallback: LogFormat): LogFormat {
  const value = r.string(obj, path, 'format', { default: fallback, pattern: /^(auto|default|json)$/, expect: FORMAT_EXPECT });
  return (LOG_FORMATS as readonly string[]).includes(value) ? (value as LogFormat) : fallback;
}

export function parseRecoveryConfig(r: ConfigReader, raw: unknown, baseDir: string, dumpsDir: string): RecoveryConfig {
  const rc = r.section(raw, 'recovery', [
    'log_sources', 'log_format', 'announce_interval_seconds', 'poll_interval_ms', 'room_concurrency', 'join_concurrency', 'join_interval_ms', 'reports',
  ]);
  const defaultName = r.string(rc, 'recovery', 'log_format', { default: 'auto', pattern: /^(auto|default|json)$/, expect: FORMAT_EXPECT });
  const defaultFormat: LogFormat = (LOG_FORMATS as readonly string[]).includes(defaultName) ? (defaultName as LogFormat) : 'auto';
  const sources: LogSourceConfig[] = [];
  const list = rc?.log_sources;
  if (list !== undefined && list !== null) {
    if (!Array.isArray(list)) {
      r.problems.push('recovery.log_sources: expected a list of sources such as {file: /var/log/matrix-synapse/homeserver.log}, {command: [journalctl, -u, matrix-synapse, -o, cat, -f]} or {stdin: true}');
    } else {
      let stdinSeen = false;
      list.forEach((item, i) => {
        const where = `recovery.log_sources[${i}]`;
        const src = r.section(item, where, SOURCE_KEYS, true);
        if (!src) return;
        const kinds = ['file', 'command', 'stdin'].filter((k) => src[k] !== undefined && src[k] !== null);
        if (kinds.length !== 1) {
          r.problems.push(`${where}: expected exactly one of file, command or stdin, got ${kinds.length === 0 ? 'none' : kinds.join(' and ')}`);
          return;
        }
        const fmt = format(r, src, where, defaultFormat);
        if (kinds[0] === 'file') {
          const file = r.string(src, where, 'file', { expect: 'the path of Synapse\'s log file' });
          const startAt = r.string(src, where, 'start_at', { default: 'end', pattern: /^(end|start)$/, expect: 'end or start' });
          if (file) sources.push({ kind: 'file', path: resolve(baseDir, file), format: fmt, startAt: startAt === 'start' ? 'start' : 'end' });
          return;
        }
        if (src.start_at !== undefined) r.problems.push(`${where}.start_at: only a file source has a start position`);
        if (kinds[0] === 'command') {
          const argv = r.stringList(src, where, 'command', { expect: 'program and arguments, e.g. [journalctl, -u, matrix-synapse, -o, cat, -f]', required: true });
          if (argv.some((a) => a.length === 0)) r.problems.push(`${where}.command: arguments must not be empty`);
          if (argv.length > 0) sources.push({ kind: 'command', argv, format: fmt });
          return;
        }
        if (src.stdin !== true) {
          r.problems.push(`${where}.stdin: expected true, got ${JSON.stringify(src.stdin)}`);
          return;
        }
        if (stdinSeen) {
          r.problems.push(`${where}: standard input can be read by one source only`);
          return;
        }
        stdinSeen = true;
        sources.push({ kind: 'stdin', format: fmt });
      });
    }
  }
  const reports = r.optionalString(rc, 'recovery', 'reports');
  return {
    logSources: sources,
    logFormat: defaultFormat,
    announceIntervalSeconds: r.integer(rc, 'recovery', 'announce_interval_seconds', { default: 300, min: 1, max: 86_400 }),
    pollIntervalMs: r.integer(rc, 'recovery', 'poll_interval_ms', { default: 1000, min: 50, max: 60_000 }),
    roomConcurrency: r.integer(rc, 'recovery', 'room_concurrency', { default: 4, min: 1, max: 64 }),
    joinConcurrency: r.integer(rc, 'recovery', 'join_concurrency', { default: 4, min: 1, max: 64 }),
    joinIntervalMs: r.integer(rc, 'recovery', 'join_interval_ms', { default: 0, min: 0, max: 600_000 }),
    reports: reports === undefined ? resolve(dumpsDir, 'rejoin-reports') : resolve(baseDir, reports),
  };
}
