import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

// Keys that carry secrets anywhere we might log an object. pino's redaction is path-based, so each
// key is listed at the top level and one and two levels down, which covers every object we log.
const SECRET_KEYS = [
  'as_token', 'hs_token', 'asToken', 'hsToken', 'access_token', 'accessToken', 'token',
  'password', 'registration_shared_secret', 'sharedSecret', 'seed', 'secretKey', 'signing_key',
  'authorization', 'Authorization',
];
const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`]);

export interface LogOptions {
  level?: string;
  /** 1 for stdout (the service), 2 for stderr (the terminal front end, whose stdout is the answer). */
  fd?: 1 | 2;
  /** For tests: capture lines instead of writing to a file descriptor. */
  stream?: NodeJS.WritableStream;
}

export function createLogger(opts: LogOptions = {}): Logger {
  const destination = opts.stream ?? pino.destination({ fd: opts.fd ?? 1, sync: false });
  return pino(
    {
      level: opts.level ?? 'info',
      base: { name: 'steward' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      serializers: { err: pino.stdSerializers.err },
    },
    destination,
  );
}

/** Removes bearer tokens and access_token query parameters from free text, e.g. a URL in an error. */
export function scrubSecrets(text: string): string {
  return text
    .replace(/(access_token=)[^&\s"]+/gi, '$1[redacted]')
    .replace(/(Bearer\s+)[A-Za-z0-9._~+/=-]+/gi, '$1[redacted]')
    .replace(/(X-Matrix\s+[^\n]*sig=")[^"]+/g, '$1[redacted]');
}

/**
 * The bridge logs through winston and the bot SDK through its LogService; both are routed into
 * our pino root so that nothing they say is dropped and everything passes the same redaction.
 */
export async function routeLibraryLogs(root: Logger): Promise<void> {
  const bridgeLog = root.child({ module: 'bridge' });
  const { Logger: BridgeLogger } = await import('matrix-appservice-bridge');
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n')) {
        if (!line.trim()) continue;
        try {
          const entry = JSON.parse(line) as { level?: string; module?: string; message?: string; args?: unknown; error?: string };
          const level = (entry.level ?? 'info').toLowerCase();
          const method = level === 'error' ? 'error' : level === 'warn' ? 'warn' : level === 'info' ? 'info' : 'debug';
          bridgeLog[method]({ component: entry.module, args: entry.args, error: entry.error }, scrubSecrets(entry.message ?? ''));
        } catch {
          bridgeLog.info(scrubSecrets(line));
        }
      }
      done();
    },
  });
  BridgeLogger.root.configureLogging({ json: true }, sink);

  // The bridge points the bot SDK at winston; point it straight at pino instead (one hop, same redaction).
  const sdk = await import('@vector-im/matrix-bot-sdk');
  const sdkLog = root.child({ module: 'bot-sdk' });
  const forward = (method: 'info' | 'warn' | 'error' | 'debug' | 'trace') =>
    (module: string, ...messageOrObject: unknown[]) => {
      const text = messageOrObject.map((m) => (typeof m === 'string' ? m : m instanceof Error ? m.message : JSON.stringify(m))).join(' ');
      sdkLog[method]({ component: module }, scrubSecrets(text));
    };
  sdk.LogService.setLogger({
    info: forward('info'), warn: forward('warn'), error: forward('error'), debug: forward('debug'), trace: forward('trace'),
  });
  sdk.LogService.setLevel(root.isLevelEnabled('debug') ? sdk.LogLevel.DEBUG : sdk.LogLevel.INFO);
}

/**
 * Node prints process warnings straight to stderr; send them through the log instead. The bridge's
 * dependencies trip DEP0060 (util._extend) on every start, which says nothing about Steward.
 */
export function routeProcessWarnings(root: Logger): void {
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => {
    const level = warning.code === 'DEP0060' ? 'debug' : 'warn';
    root[level]({ module: 'node', code: warning.code, warning: warning.name }, warning.message);
  });
}
