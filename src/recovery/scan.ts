import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { createGunzip } from 'node:zlib';
import type { Readable } from 'node:stream';
import type { JobContext, JobDefinition } from '../jobs/runner.ts';
import { errorMessage, failure, ok, type Result } from '../util/result.ts';
import { LineSplitter } from './log-sources.ts';
import { LOG_FORMATS, SightingCorrelator, type LogFormat, type Sighting } from './log-parser.ts';
import type { LostRoomStore } from './lost-rooms.ts';

export interface ScanCounts {
  lines: number;
  parsed: number;
  unparsed: number;
  sightings: number;
  rooms: number;
  newRooms: number;
  lostAgain: number;
}

export interface ScanOptions {
  readonly path: string;
  readonly format: LogFormat;
  readonly rooms: LostRoomStore;
  readonly serverName: string;
  readonly signal?: AbortSignal;
  /** Skip this many decompressed bytes (a resumed scan). */
  readonly skipBytes?: number;
  /** Called after each batch is recorded, with decompressed and on-disk bytes read so far. */
  onBatch?(progress: { bytes: number; diskBytes: number; counts: ScanCounts }): void;
}

const BATCH_LINES = 20_000;

async function isGzip(path: string): Promise<boolean> {
  const fh = await open(path, 'r');
  try {
    const head = Buffer.alloc(2);
    const { bytesRead } = await fh.read(head, 0, 2, 0);
    return bytesRead === 2 && head[0] === 0x1f && head[1] === 0x8b;
  } finally {
    await fh.close();
  }
}

/**
 * Reads a historical log file once (plain or gzip, told apart by its first bytes) and records the
 * lost rooms it names, with the times the lines carry. Memory stays flat: lines are streamed and
 * sightings recorded in batches.
 */
export async function scanLogFile(opts: ScanOptions): Promise<Result<ScanCounts>> {
  let gz: boolean;
  try {
    const s = await stat(opts.path);
    if (!s.isFile()) return { ok: false, error: failure('E_SCAN_FILE', `${opts.path} is not a regular file.`) };
    gz = await isGzip(opts.path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return { ok: false, error: failure('E_SCAN_FILE', `Cannot read ${opts.path}: ${code === 'ENOENT' ? 'it does not exist' : code === 'EACCES' ? 'permission denied' : errorMessage(err)}.`) };
  }
  const disk = createReadStream(opts.path, { highWaterMark: 256 * 1024 });
  const stream: Readable = gz ? disk.pipe(createGunzip()) : disk;
  const correlator = new SightingCorrelator(opts.format);
  const splitter = new LineSplitter();
  const seen = new Set<string>();
  const counts: ScanCounts = { lines: 0, parsed: 0, unparsed: 0, sightings: 0, rooms: 0, newRooms: 0, lostAgain: 0 };
  let bytes = 0;
  let skip = opts.skipBytes ?? 0;
  let batch: Sighting[] = [];
  let linesInBatch = 0;
  const now = Date.now();
  const record = (): void => {
    const r = opts.rooms.record(batch.map((s) => ({ roomId: s.roomId, server: s.server, ts: Math.min(s.ts ?? now, now) })), opts.serverName, now);
    for (const s of batch) seen.add(s.roomId);
    counts.newRooms += r.newRooms.length;
    counts.lostAgain += r.lostAgain.length;
    batch = [];
    linesInBatch = 0;
    Object.assign(counts, { lines: correlator.counters.lines, parsed: correlator.counters.parsed, unparsed: correlator.counters.unparsed, sightings: correlator.counters.sightings, rooms: seen.size });
    opts.onBatch?.({ bytes, diskBytes: disk.bytesRead, counts: { ...counts } });
  };
  try {
    for await (const chunk of stream as AsyncIterable<Buffer>) {
      if (opts.signal?.aborted) break;
      let data = chunk;
      if (skip > 0) {
        const cut = Math.min(skip, data.length);
        skip -= cut;
        bytes += cut;
        data = data.subarray(cut);
        if (data.length === 0) continue;
      }
      bytes += data.length;
      for (const line of splitter.push(data)) {
        batch.push(...correlator.feed(line, now));
        linesInBatch += 1;
      }
      if (linesInBatch >= BATCH_LINES) record();
    }
  } catch (err) {
    disk.destroy();
    return { ok: false, error: failure('E_SCAN_FILE', `Reading ${opts.path} failed: ${(err as NodeJS.ErrnoException).code === 'Z_DATA_ERROR' ? 'the gzip data is corrupt' : errorMessage(err)}.`) };
  }
  for (const line of splitter.end()) batch.push(...correlator.feed(line, now));
  batch.push(...correlator.flush());
  record();
  return ok(counts);
}

export interface LostScanArgs {
  readonly path: string;
  readonly format: LogFormat;
}

interface ScanCheckpoint {
  readonly bytes: number;
}

export function parseLostScanArgs(args: Record<string, unknown>): LostScanArgs {
  const format = typeof args.format === 'string' && (LOG_FORMATS as readonly string[]).includes(args.format) ? (args.format as LogFormat) : 'auto';
  return { path: String(args.path), format };
}

const MIB = 1024 * 1024;

/** `lost scan FILE` as a durable job; progress in MiB of the file on disk. */
export function lostScanJob(deps: { rooms: () => LostRoomStore; serverName: string }): JobDefinition {
  return {
    type: 'lost-scan',
    title: (raw) => `lost scan ${parseLostScanArgs(raw).path}`,
    async run(ctx: JobContext) {
      const args = parseLostScanArgs(ctx.job.args);
      const resume = ctx.resumeFrom as ScanCheckpoint | undefined;
      try {
        ctx.setTotal(Math.max(1, Math.ceil((await stat(args.path)).size / MIB)));
      } catch {
        // scanLogFile says what is wrong with the file
      }
      let reportedMib = Math.floor(ctx.counters().done);
      const scanned = await scanLogFile({
        path: args.path, format: args.format, rooms: deps.rooms(), serverName: deps.serverName, signal: ctx.signal,
        ...(resume ? { skipBytes: resume.bytes } : {}),
        onBatch: ({ bytes, diskBytes }) => {
          const mib = Math.floor(diskBytes / MIB);
          if (mib > reportedMib) {
            ctx.advance(mib - reportedMib);
            reportedMib = mib;
          }
          ctx.checkpoint({ bytes } satisfies ScanCheckpoint);
        },
      });
      if (ctx.signal.aborted) return { ok: false, error: failure('E_CANCELLED', 'stopped') };
      if (!scanned.ok) return scanned;
      const total = ctx.counters().total;
      if (total !== null && reportedMib < total) ctx.advance(total - reportedMib);
      const c = scanned.value;
      return ok({
        summary: `${args.path}: ${c.lines} lines (${c.unparsed} not in a Synapse log format, skipped), ${c.sightings} lost-room lines naming ${c.rooms} room(s): ${c.newRooms} new${c.lostAgain ? `, ${c.lostAgain} lost again after a recovery` : ''}. !lost list shows them.`,
        details: { ...c },
      });
    },
  };
}
