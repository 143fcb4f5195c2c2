import type { FederationClient } from '../federation/federation-client.ts';
import { isValidServerName } from '../federation/server-name.ts';
import { escapeHtml } from '../util/html.ts';
import { fail, ok, type Failure, type Result } from '../util/result.ts';

export const QUERY_METHODS = ['GET', 'POST', 'PUT'] as const;
export type QueryMethod = (typeof QUERY_METHODS)[number];

export interface QueryRequest {
  readonly server: string;
  readonly method: QueryMethod;
  /** Exactly as it goes on the wire and into the signature. */
  readonly path: string;
  readonly body: unknown;
}

/** How much formatted JSON a room reply shows; the terminal prints it all. */
export const ROOM_JSON_LIMIT = 3000;

/**
 * Checks and normalises `!fed query` input. Only `/_matrix/` paths: the command speaks the
 * server-server API, not the admin API or anything a proxy might route elsewhere.
 */
export function parseQuery(server: string, rawPath: string, method: string | undefined, json: string | undefined): Result<QueryRequest> {
  if (!isValidServerName(server)) return fail('E_USAGE', `"${server}" is not a server name (such as example.org or example.org:8448).`);
  const path = wirePath(rawPath);
  if (!path.startsWith('/_matrix/')) {
    return fail('E_USAGE', `Only server-server API paths can be queried: the path must start with /_matrix/ (got "${rawPath.slice(0, 100)}").`);
  }
  const pathOnly = path.split('?', 1)[0]!;
  if (pathOnly.split('/').some((segment) => /^(\.|%2e){1,2}$/i.test(segment))) {
    return fail('E_USAGE', 'The path must not contain "." or ".." segments.');
  }
  const upper = method?.toUpperCase();
  if (upper !== undefined && !(QUERY_METHODS as readonly string[]).includes(upper)) {
    return fail('E_USAGE', `--method must be one of ${QUERY_METHODS.join(', ')}, got "${method}".`);
  }
  let body: unknown;
  if (json !== undefined) {
    try {
      body = JSON.parse(json);
    } catch (err) {
      return fail('E_USAGE', `--json is not valid JSON: ${err instanceof Error ? err.message : String(err)}. Quote it: --json '{"key": "value"}'.`);
    }
    if (upper === 'GET') return fail('E_USAGE', 'A GET request has no body: use --method POST or PUT with --json.');
  }
  return ok({ server, method: (upper ?? (json === undefined ? 'GET' : 'POST')) as QueryMethod, path, body });
}

/**
 * Percent-encodes what may not go on the request line as typed (spaces, `#` as in aliases,
 * non-ASCII), leaving what the admin already encoded alone.
 */
export function wirePath(raw: string): string {
  let out = '';
  for (const ch of raw) out += /^[\x21-\x22\x24-\x7E]$/.test(ch) ? ch : encodeURIComponent(ch);
  return out;
}

export interface QueryAnswer {
  readonly request: QueryRequest;
  readonly value: unknown;
  readonly elapsedMs: number;
  /** Size of the answer as compact JSON (what Synapse sends). */
  readonly bytes: number;
}

export async function runQuery(client: Pick<FederationClient, 'request'>, request: QueryRequest, signal?: AbortSignal): Promise<Result<QueryAnswer>> {
  const started = performance.now();
  const answer = await client.request<unknown>(request.server, request.method, request.path, {
    ...(request.body !== undefined ? { body: request.body } : {}),
    // A PUT or POST may not be safe to send twice.
    ...(request.method === 'GET' ? {} : { retry: false }),
    ...(signal ? { signal } : {}),
  });
  const elapsedMs = Math.round(performance.now() - started);
  if (!answer.ok) {
    const e = answer.error;
    const extra = extraErrorFields(e.body);
    const failure: Failure = {
      code: e.code,
      human: `${e.human} (after ${elapsedMs} ms)${extra ? `\n${extra}` : ''}`,
      log: e.log,
    };
    return { ok: false, error: failure };
  }
  return ok({ request, value: answer.value, elapsedMs, bytes: Buffer.byteLength(JSON.stringify(answer.value) ?? '') });
}

/** An error answer's fields beyond errcode and error (e.g. retry_after_ms), compact. */
function extraErrorFields(body: unknown): string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return '';
  const rest = Object.fromEntries(Object.entries(body).filter(([k]) => k !== 'errcode' && k !== 'error'));
  if (Object.keys(rest).length === 0) return '';
  const text = JSON.stringify(rest);
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function summaryLine(a: QueryAnswer): string {
  return `${a.request.method} ${a.request.server} ${a.request.path} → OK in ${a.elapsedMs} ms, ${formatBytes(a.bytes)}`;
}

/** Cuts pretty JSON at a line end within `limit` characters. */
export function truncateJson(pretty: string, limit: number): { text: string; truncated: boolean } {
  if (pretty.length <= limit) return { text: pretty, truncated: false };
  const cut = pretty.lastIndexOf('\n', limit);
  return { text: `${pretty.slice(0, cut > 0 ? cut : limit)}\n…`, truncated: true };
}

/** The room reply: a summary line and the answer as formatted JSON, cut to a few KB. */
export function roomReply(a: QueryAnswer, limit = ROOM_JSON_LIMIT): { text: string; html: string } {
  const pretty = JSON.stringify(a.value, null, 2) ?? 'null';
  const shown = truncateJson(pretty, limit);
  const note = shown.truncated
    ? `Showing ${shown.text.length - 2} of ${pretty.length} characters; the terminal form (steward fed query …) prints the whole answer.`
    : '';
  const summary = summaryLine(a);
  const text = [summary, shown.text, note].filter(Boolean).join('\n');
  const html = `<p><code>${escapeHtml(summary)}</code></p><pre><code class="language-json">${escapeHtml(shown.text)}</code></pre>${note ? `<p><i>${escapeHtml(note)}</i></p>` : ''}`;
  return { text, html };
}

/** The terminal answer: the whole JSON, nothing else, so it can be piped (e.g. into jq). */
export function terminalReply(a: QueryAnswer): { text: string; html: string } {
  const pretty = JSON.stringify(a.value, null, 2) ?? 'null';
  return { text: pretty, html: `<pre><code class="language-json">${escapeHtml(pretty)}</code></pre>` };
}
