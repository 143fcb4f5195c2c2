import { spawn, type ChildProcess } from 'node:child_process';
import { open, stat, type FileHandle } from 'node:fs/promises';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import { errorMessage } from '../util/result.ts';

/** How a source is doing; 'failing' and 'ended' carry a human detail. */
export type SourceState = 'starting' | 'following' | 'failing' | 'ended' | 'stopped';

export interface SourceCallbacks {
  /** Complete lines, in order, without their newline. */
  onLines(lines: string[]): void;
  onState(state: SourceState, detail: string | null): void;
}

export interface LogSource {
  readonly name: string;
  start(): void;
  stop(): Promise<void>;
}

/** A line longer than this is cut and passed on as it is (it will not parse): memory stays bounded. */
export const MAX_LINE_BYTES = 1024 * 1024;
const READ_CHUNK = 256 * 1024;
/** Per poll, so a huge backlog does not hold the event loop. */
const MAX_READ_PER_POLL = 16 * 1024 * 1024;

/** Splits a byte stream into lines, keeping the unfinished tail; multi-byte characters may straddle chunks. */
export class LineSplitter {
  private decoder = new StringDecoder('utf8');
  private tail = '';

  push(chunk: Buffer): string[] {
    const text = this.tail + this.decoder.write(chunk);
    const parts = text.split('\n');
    this.tail = parts.pop()!;
    if (this.tail.length > MAX_LINE_BYTES) {
      parts.push(this.tail);
      this.tail = '';
    }
    return parts;
  }

  /** The unfinished last line, if any (at end of input). */
  end(): string[] {
    const rest = this.tail + this.decoder.end();
    this.reset();
    return rest ? [rest] : [];
  }

  reset(): void {
    this.decoder = new StringDecoder('utf8');
    this.tail = '';
  }
}

export function backoffMs(failures: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.max(0, failures - 1));
}

export interface FileFollowerOptions {
  readonly name: string;
  readonly path: string;
  /** Where to begin the first time the file is opened: its end (only new lines) or its start. */
  readonly startAt: 'end' | 'start';
  readonly pollMs: number;
  /** Where a previous run stopped in this file; used when the file is still the same one. */
  readonly saved: { fileId: string; offset: number } | undefined;
  savePosition(fileId: string, offset: number): void;
  readonly maxBackoffMs?: number;
}

/**
 * Follows a file like `tail -F`: new lines as they are written, across rotation by rename (the
 * old file is read to its end, then the new one from its start) and by copytruncate (the file
 * shrinks: read again from its start). A missing or unreadable file is retried with backoff.
 */
export class FileFollower implements LogSource {
  readonly name: string;
  private readonly opts: FileFollowerOptions;
  private readonly cb: SourceCallbacks;
  private handle: FileHandle | null = null;
  private fileId: string | null = null;
  private position = 0;
  private savedPosition = -1;
  private readonly splitter = new LineSplitter();
  private firstOpen = true;
  private failures = 0;
  private stopped = false;
  private loop: Promise<void> | null = null;
  private wake: AbortController | null = null;

  constructor(opts: FileFollowerOptions, cb: SourceCallbacks) {
    this.name = opts.name;
    this.opts = opts;
    this.cb = cb;
  }

  start(): void {
    this.cb.onState('starting', null);
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.abort();
    await this.loop;
    await this.closeHandle();
    this.cb.onState('stopped', null);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      let waitMs = this.opts.pollMs;
      try {
        const more = await this.poll();
        if (more) waitMs = 0;
      } catch (err) {
        // Any error here is an I/O problem of this file: report, back off, try again.
        await this.closeHandle();
        // A file that was missing at start is new when it appears: read it from its start.
        if (this.fileId === null) this.firstOpen = false;
        this.failures += 1;
        this.cb.onState('failing', `cannot read ${this.opts.path}: ${describeFsError(err)}`);
        waitMs = backoffMs(this.failures, Math.max(this.opts.pollMs, 500), this.opts.maxBackoffMs ?? 30_000);
      }
      if (this.stopped) break;
      if (waitMs > 0) {
        this.wake = new AbortController();
        await sleep(waitMs, undefined, { signal: this.wake.signal }).catch(() => undefined);
      }
    }
  }

  /** One round: open if needed, read what is new, check for rotation. Answers whether more is waiting. */
  private async poll(): Promise<boolean> {
    if (!this.handle) await this.openCurrent();
    const more = await this.readAvailable();
    if (more) return true;
    // At the end of what we have: has the path moved on to another file, or been truncated?
    let current: { fileId: string; size: number } | null = null;
    try {
      const s = await stat(this.opts.path, { bigint: true });
      current = { fileId: `${s.dev}:${s.ino}`, size: Number(s.size) };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      // Renamed away and not yet re-created: keep the old handle, the writer may still append to it.
    }
    if (current && current.fileId !== this.fileId) {
      await this.readAvailable(Number.POSITIVE_INFINITY); // whatever was written before the rename
      this.emit(this.splitter.end());
      await this.closeHandle();
      await this.openCurrent();
      return true;
    }
    if (current && current.size < this.position) {
      // copytruncate: the same file, cut short; what is there now is new.
      this.splitter.reset();
      this.position = 0;
      return true;
    }
    this.persist();
    return false;
  }

  private async openCurrent(): Promise<void> {
    const handle = await open(this.opts.path, 'r');
    try {
      const s = await handle.stat({ bigint: true });
      if (!s.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'ENOTFILE' });
      const fileId = `${s.dev}:${s.ino}`;
      const size = Number(s.size);
      if (this.firstOpen) {
        const saved = this.opts.saved;
        this.position = saved && saved.fileId === fileId && saved.offset <= size ? saved.offset : this.opts.startAt === 'end' ? size : 0;
      } else if (fileId !== this.fileId || this.position > size) {
        this.position = 0; // a new file (rotation, or created after we started): all of it is new
      }
      this.firstOpen = false;
      this.handle = handle;
      this.fileId = fileId;
      this.splitter.reset();
      this.failures = 0;
      this.cb.onState('following', null);
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
  }

  private async readAvailable(limit = MAX_READ_PER_POLL): Promise<boolean> {
    const handle = this.handle!;
    const buffer = Buffer.allocUnsafe(READ_CHUNK);
    let readNow = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, READ_CHUNK, this.position);
      if (bytesRead === 0) return false;
      this.position += bytesRead;
      readNow += bytesRead;
      this.emit(this.splitter.push(buffer.subarray(0, bytesRead)));
      if (readNow >= limit) {
        this.persist();
        return true;
      }
    }
  }

  private emit(lines: string[]): void {
    if (lines.length > 0) this.cb.onLines(lines);
  }

  private persist(): void {
    if (this.fileId !== null && this.position !== this.savedPosition) {
      this.opts.savePosition(this.fileId, this.position);
      this.savedPosition = this.position;
    }
  }

  private async closeHandle(): Promise<void> {
    const h = this.handle;
    this.handle = null;
    if (h) await h.close().catch(() => undefined);
  }
}

function describeFsError(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'it does not exist';
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied (is Steward allowed to read it?)';
  if (code === 'EISDIR' || code === 'ENOTFILE') return 'it is not a regular file';
  return code ?? errorMessage(err);
}

export interface CommandSourceOptions {
  readonly name: string;
  readonly argv: readonly string[];
  readonly maxBackoffMs?: number;
  /** A run that lasted this long resets the backoff. */
  readonly healthyAfterMs?: number;
}

/**
 * Runs a command (e.g. `journalctl -u matrix-synapse -o cat -f`, `docker logs -f synapse`) and
 * reads its standard output and standard error (docker passes the container's stderr through),
 * line by line. When it cannot start or exits, it is started again with backoff.
 */
export class CommandSource implements LogSource {
  readonly name: string;
  private readonly opts: CommandSourceOptions;
  private readonly cb: SourceCallbacks;
  private child: ChildProcess | null = null;
  private stopped = false;
  private failures = 0;
  private loop: Promise<void> | null = null;
  private wake: AbortController | null = null;

  constructor(opts: CommandSourceOptions, cb: SourceCallbacks) {
    this.name = opts.name;
    this.opts = opts;
    this.cb = cb;
  }

  start(): void {
    this.cb.onState('starting', null);
    this.loop = this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.abort();
    const child = this.child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
    }
    await this.loop;
    this.cb.onState('stopped', null);
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const started = Date.now();
      const outcome = await this.once();
      if (this.stopped) break;
      if (Date.now() - started >= (this.opts.healthyAfterMs ?? 60_000)) this.failures = 0;
      this.failures += 1;
      const waitMs = backoffMs(this.failures, 1000, this.opts.maxBackoffMs ?? 60_000);
      this.cb.onState('failing', `${outcome}; starting it again in ${Math.round(waitMs / 1000)}s`);
      this.wake = new AbortController();
      await sleep(waitMs, undefined, { signal: this.wake.signal }).catch(() => undefined);
    }
  }

  /** Runs the command to its end; answers why it ended. */
  private once(): Promise<string> {
    const [program, ...args] = this.opts.argv;
    return new Promise((resolve) => {
      let child: ChildProcess;
      try {
        child = spawn(program!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (err) {
        resolve(`\`${this.opts.argv.join(' ')}\` could not be started: ${errorMessage(err)}`);
        return;
      }
      this.child = child;
      const out = new LineSplitter();
      const err = new LineSplitter();
      let reported = false;
      child.stdout!.on('data', (chunk: Buffer) => {
        if (!reported) {
          reported = true;
          this.cb.onState('following', null);
        }
        const lines = out.push(chunk);
        if (lines.length) this.cb.onLines(lines);
      });
      child.stderr!.on('data', (chunk: Buffer) => {
        const lines = err.push(chunk);
        if (lines.length) this.cb.onLines(lines);
      });
      child.once('spawn', () => {
        if (!reported) {
          reported = true;
          this.cb.onState('following', null);
        }
      });
      let spawnError: Error | null = null;
      child.once('error', (e) => {
        spawnError = e;
      });
      child.once('close', (code, signal) => {
        this.child = null;
        const rest = [...out.end(), ...err.end()];
        if (rest.length) this.cb.onLines(rest);
        if (spawnError) {
          const code = (spawnError as NodeJS.ErrnoException).code;
          resolve(`\`${this.opts.argv.join(' ')}\` could not be started: ${code === 'ENOENT' ? `${program} was not found` : errorMessage(spawnError)}`);
        } else {
          resolve(`\`${this.opts.argv.join(' ')}\` exited (${signal ? `signal ${signal}` : `code ${code}`})`);
        }
      });
    });
  }
}

/** Reads Steward's own standard input (`synapse … 2>&1 | steward run`); its end is final. */
export class StdinSource implements LogSource {
  readonly name = 'stdin';
  private readonly cb: SourceCallbacks;
  private readonly input: NodeJS.ReadableStream;
  private readonly splitter = new LineSplitter();
  private onData = (chunk: Buffer | string): void => {
    const lines = this.splitter.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
    if (lines.length) this.cb.onLines(lines);
  };
  private onEnd = (): void => {
    const rest = this.splitter.end();
    if (rest.length) this.cb.onLines(rest);
    this.cb.onState('ended', 'standard input was closed; restart Steward to read it again');
  };

  constructor(cb: SourceCallbacks, input: NodeJS.ReadableStream = process.stdin) {
    this.cb = cb;
    this.input = input;
  }

  start(): void {
    this.cb.onState('following', null);
    this.input.on('data', this.onData);
    this.input.once('end', this.onEnd);
  }

  async stop(): Promise<void> {
    this.input.off('data', this.onData);
    this.input.off('end', this.onEnd);
    (this.input as NodeJS.ReadStream).pause?.();
    this.cb.onState('stopped', null);
  }
}
