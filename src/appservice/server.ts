import { createHash } from 'node:crypto';
import type { Server } from 'node:http';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from '../log.ts';
import type { Metrics } from '../metrics/metrics.ts';
import type { Inbox, MatrixEvent } from '../store/inbox.ts';
import { hasQueryToken, presentedToken, tokensMatch } from './token.ts';

export interface AppserviceServerOptions {
  readonly hsToken: string;
  readonly inbox: Inbox;
  readonly log: Logger;
  /** Which events are worth keeping; the namespace covers every local user, so most are not. */
  readonly wants: (event: MatrixEvent, kind: 'pdu' | 'ephemeral') => boolean;
  /** Called after a transaction has been durably taken. */
  readonly onTaken: () => void;
  /** Answers the unauthenticated health check (Docker, load balancers). */
  readonly health: () => Record<string, unknown>;
  /** Accept the hs_token as `?access_token=` (legacy Synapse < 1.84); off by default. */
  readonly allowQueryToken?: boolean;
  /** Counts transactions and the events kept from them. */
  readonly metrics?: Metrics;
  /** Serves `GET /metrics` (unauthenticated, like /health) when given. */
  readonly scrape?: () => Promise<{ contentType: string; body: string }>;
}

const MAX_TRANSACTION_BYTES = 64 * 1024 * 1024;

/** The HTTP side of the appservice API: the homeserver pushes transactions here. */
export function createAppserviceApp(opts: AppserviceServerOptions): express.Express {
  const log = opts.log.child({ module: 'appservice' });
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

  app.get('/health', (_req, res) => {
    res.status(200).json({ status: 'ok', ...opts.health() });
  });

  const scrape = opts.scrape;
  if (scrape) {
    app.get('/metrics', (_req, res) => {
      scrape().then(({ contentType, body }) => {
        // As prom-client gives it: express's type() would reorder the parameters.
        res.status(200).setHeader('content-type', contentType);
        res.end(body);
      }, (err: unknown) => {
        log.error({ err }, 'metrics scrape failed');
        res.status(500).type('text/plain').send('metrics unavailable\n');
      });
    });
  }
  const count = (outcome: string): void => opts.metrics?.inc('transactions_received_total', { outcome });

  const requireHsToken = (req: Request, res: Response, next: NextFunction): void => {
    const allowQuery = opts.allowQueryToken === true;
    if (tokensMatch(presentedToken(req.headers.authorization, req.query, allowQuery), opts.hsToken)) return next();
    if (!allowQuery && req.headers.authorization === undefined && hasQueryToken(req.query)) {
      // Logged without the URL: the URL carries the token.
      log.warn({ path: req.path, ip: req.ip }, 'refused an hs_token sent in the query string (set appservice.allow_query_token to accept it)');
      if (req.path.includes('/transactions/')) count('refused');
      res.status(403).json({
        errcode: 'M_FORBIDDEN',
        error: 'The homeserver token was sent in the query string (?access_token=), which Steward refuses: a token in a URL ends up in proxy logs. Synapse 1.84 and later send it as Authorization: Bearer; for an older homeserver set appservice.allow_query_token: true.',
      });
      return;
    }
    log.warn({ path: req.path, ip: req.ip }, 'refused a request without the right hs_token');
    if (req.path.includes('/transactions/')) count('refused');
    res.status(403).json({ errcode: 'M_FORBIDDEN', error: 'Bad or missing homeserver token' });
  };

  const raw = express.raw({ type: () => true, limit: MAX_TRANSACTION_BYTES });

  const onTransaction = (req: Request, res: Response): void => {
    const txnId = String(req.params.txnId);
    const body = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      count('bad');
      res.status(400).json({ errcode: 'M_NOT_JSON', error: 'Transaction body is not JSON' });
      return;
    }
    const txn = parsed as { events?: unknown; ephemeral?: unknown; 'de.sorunome.msc2409.ephemeral'?: unknown };
    if (typeof parsed !== 'object' || parsed === null || !Array.isArray(txn.events)) {
      count('bad');
      res.status(400).json({ errcode: 'M_BAD_JSON', error: 'Transaction has no events list' });
      return;
    }
    // Synapse sends the stable and the legacy key with the same content when both flags are set: read one.
    const ephemeralRaw = Array.isArray(txn.ephemeral) ? txn.ephemeral : Array.isArray(txn['de.sorunome.msc2409.ephemeral']) ? txn['de.sorunome.msc2409.ephemeral'] : [];
    const pdus = (txn.events as unknown[]).filter(isEvent).filter((e) => opts.wants(e, 'pdu'));
    const ephemeral = (ephemeralRaw as unknown[]).filter(isEvent).filter((e) => opts.wants(e, 'ephemeral'));
    const dedupeKey = `${txnId}:${createHash('sha256').update(body).digest('base64url')}`;
    let taken: { outcome: 'taken' | 'duplicate'; stored: number };
    try {
      taken = opts.inbox.take(dedupeKey, txnId, pdus, ephemeral);
    } catch (err) {
      // Not taken: a 500 makes the homeserver send it again later, so nothing is lost.
      log.error({ err, txnId }, 'could not store a transaction');
      count('error');
      res.status(500).json({ errcode: 'M_UNKNOWN', error: 'Could not store the transaction' });
      return;
    }
    log.debug({ txnId, outcome: taken.outcome, stored: taken.stored, events: pdus.length, ephemeral: ephemeral.length }, 'transaction');
    count(taken.outcome);
    if (taken.outcome === 'taken') {
      if (pdus.length) opts.metrics?.inc('events_received_total', { kind: 'pdu' }, pdus.length);
      if (ephemeral.length) opts.metrics?.inc('events_received_total', { kind: 'ephemeral' }, ephemeral.length);
    }
    res.status(200).json({});
    if (taken.stored > 0) opts.onTaken();
  };

  for (const prefix of ['/_matrix/app/v1', '']) {
    app.put(`${prefix}/transactions/:txnId`, requireHsToken, raw, onTransaction);
    app.get(`${prefix}/users/:userId`, requireHsToken, (_req, res) => {
      res.status(404).json({ errcode: 'M_NOT_FOUND', error: 'Steward does not create users on demand' });
    });
    app.get(`${prefix}/rooms/:alias`, requireHsToken, (_req, res) => {
      res.status(404).json({ errcode: 'M_NOT_FOUND', error: 'Steward does not create rooms on demand' });
    });
  }
  app.post('/_matrix/app/v1/ping', requireHsToken, raw, (_req, res) => {
    res.status(200).json({});
  });

  app.use((_req, res) => {
    res.status(404).json({ errcode: 'M_UNRECOGNIZED', error: 'Unrecognized request' });
  });
  app.use((err: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const status = (err as { status?: number }).status ?? 500;
    if (status >= 500) log.error({ err }, 'appservice request failed');
    res.status(status).json({ errcode: status === 413 ? 'M_TOO_LARGE' : status === 400 ? 'M_NOT_JSON' : 'M_UNKNOWN', error: (err as Error).message ?? 'error' });
  });
  return app;
}

export function listen(app: express.Express, port: number, host: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = app.listen(port, host, () => resolve(server));
    server.once('error', reject);
  });
}

function isEvent(value: unknown): value is MatrixEvent {
  const ev = value as MatrixEvent;
  return typeof value === 'object' && value !== null && typeof ev.type === 'string' && typeof ev.content === 'object' && ev.content !== null;
}
