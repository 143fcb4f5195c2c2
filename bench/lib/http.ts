// Plain HTTP for benchmarks: fetch, read the body, parse JSON. No retries, no framework,
// so a benchmark's baseline measures the homeserver and not a client library.

export interface HttpAnswer {
  readonly status: number;
  readonly json: unknown;
  readonly text: string;
}

export async function call(method: string, url: string, opts: { token?: string; body?: unknown } = {}): Promise<HttpAnswer> {
  const headers: Record<string, string> = {};
  if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(url, { method, headers, body: opts.body === undefined ? null : JSON.stringify(opts.body) });
  const text = await res.text();
  let json: unknown = undefined;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
  }
  return { status: res.status, json, text };
}

/** Like call(), but a non-2xx answer is an error naming the request. */
export async function callOk<T = any>(method: string, url: string, opts: { token?: string; body?: unknown } = {}): Promise<T> {
  const answer = await call(method, url, opts);
  if (answer.status < 200 || answer.status >= 300) {
    throw new Error(`${method} ${new URL(url).pathname} → ${answer.status} ${answer.text.slice(0, 300)}`);
  }
  return answer.json as T;
}
