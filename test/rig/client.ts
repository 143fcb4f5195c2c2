// A deliberately small Matrix client for tests: what a user's own session would do,
// with no SDK in between so a test failure points at Synapse or at Steward, not at
// a client library.

export class MatrixHttpError extends Error {
  readonly status: number;
  readonly errcode: string | undefined;
  readonly body: unknown;

  constructor(method: string, path: string, status: number, body: unknown) {
    const errcode = (body as { errcode?: unknown } | null)?.errcode;
    const error = (body as { error?: unknown } | null)?.error;
    super(
      `${method} ${path} → ${status}` +
        (typeof errcode === 'string' ? ` ${errcode}` : '') +
        (typeof error === 'string' ? `: ${error}` : ''),
    );
    this.name = 'MatrixHttpError';
    this.status = status;
    this.errcode = typeof errcode === 'string' ? errcode : undefined;
    this.body = body;
  }
}

export type Query = Record<string, string | string[] | undefined>;

export interface WaitOptions {
  timeoutMs?: number;
  /** Also look at the timelines of an initial sync, instead of only what comes after now. */
  fromStart?: boolean;
}

const enc = encodeURIComponent;
const CLIENT = '/_matrix/client/v3';
const REQUEST_TIMEOUT_MS = 30_000;
let txnCounter = 0;

export class MatrixTestClient {
  readonly baseUrl: string;
  readonly userId: string;
  readonly accessToken: string;
  deviceId: string | undefined;
  // Where waitForEvent resumes, so events that arrive between two waits are not lost.
  #since: string | undefined;
  #pending: { event: any; roomId: string }[] = [];
  #queuedIds = new Set<string>();

  constructor(baseUrl: string, userId: string, accessToken: string) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.userId = userId;
    this.accessToken = accessToken;
  }

  static async login(
    baseUrl: string,
    userId: string,
    password: string,
    deviceId?: string,
  ): Promise<MatrixTestClient> {
    const anonymous = new MatrixTestClient(baseUrl, userId, '');
    const res = await anonymous.request<{ user_id: string; access_token: string; device_id: string }>(
      'POST',
      `${CLIENT}/login`,
      {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: userId },
        password,
        ...(deviceId !== undefined ? { device_id: deviceId } : {}),
      },
    );
    const client = new MatrixTestClient(baseUrl, res.user_id, res.access_token);
    client.deviceId = res.device_id;
    return client;
  }

  async request<T = any>(method: string, path: string, body?: unknown, query?: Query): Promise<T> {
    const url = new URL(this.baseUrl + path);
    for (const [key, value] of Object.entries(query ?? {})) {
      if (value === undefined) continue;
      for (const v of Array.isArray(value) ? value : [value]) url.searchParams.append(key, v);
    }
    const headers: Record<string, string> = {};
    if (this.accessToken) headers['authorization'] = `Bearer ${this.accessToken}`;
    if (body !== undefined) headers['content-type'] = 'application/json';
    // Long-polling syncs carry their own server-side timeout; leave room above it.
    const serverTimeout = Number(url.searchParams.get('timeout') ?? 0);
    const res = await fetch(url, {
      method,
      headers,
      body: body === undefined ? null : JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS + serverTimeout),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      // Not JSON (e.g. a proxy error page): keep the text for the error message.
    }
    if (!res.ok) throw new MatrixHttpError(method, path, res.status, parsed);
    return parsed as T;
  }

  async createRoom(body: object = {}): Promise<string> {
    const res = await this.request<{ room_id: string }>('POST', `${CLIENT}/createRoom`, body);
    return res.room_id;
  }

  async join(roomIdOrAlias: string, via: string[] = []): Promise<string> {
    const res = await this.request<{ room_id: string }>(
      'POST',
      `${CLIENT}/join/${enc(roomIdOrAlias)}`,
      {},
      via.length > 0 ? { via } : undefined,
    );
    return res.room_id;
  }

  async leave(roomId: string): Promise<void> {
    await this.request('POST', `${CLIENT}/rooms/${enc(roomId)}/leave`, {});
  }

  async invite(roomId: string, userId: string): Promise<void> {
    await this.request('POST', `${CLIENT}/rooms/${enc(roomId)}/invite`, { user_id: userId });
  }

  async sendText(roomId: string, body: string): Promise<string> {
    return this.sendEvent(roomId, 'm.room.message', { msgtype: 'm.text', body });
  }

  async sendEvent(roomId: string, type: string, content: object): Promise<string> {
    const txnId = `rig-${Date.now()}-${++txnCounter}`;
    const res = await this.request<{ event_id: string }>(
      'PUT',
      `${CLIENT}/rooms/${enc(roomId)}/send/${enc(type)}/${enc(txnId)}`,
      content,
    );
    return res.event_id;
  }

  async sendState(roomId: string, type: string, stateKey: string, content: object): Promise<string> {
    const res = await this.request<{ event_id: string }>(
      'PUT',
      `${CLIENT}/rooms/${enc(roomId)}/state/${enc(type)}/${enc(stateKey)}`,
      content,
    );
    return res.event_id;
  }

  async sendReceipt(roomId: string, eventId: string, type = 'm.read', threadId?: string): Promise<void> {
    await this.request(
      'POST',
      `${CLIENT}/rooms/${enc(roomId)}/receipt/${enc(type)}/${enc(eventId)}`,
      threadId !== undefined ? { thread_id: threadId } : {},
    );
  }

  async setAccountData(type: string, content: object, roomId?: string): Promise<void> {
    const user = `${CLIENT}/user/${enc(this.userId)}`;
    const path =
      roomId === undefined
        ? `${user}/account_data/${enc(type)}`
        : `${user}/rooms/${enc(roomId)}/account_data/${enc(type)}`;
    await this.request('PUT', path, content);
  }

  async setPusher(pusher: object): Promise<void> {
    await this.request('POST', `${CLIENT}/pushers/set`, pusher);
  }

  /** One raw /sync; does not move the position that waitForEvent keeps. */
  async sync(opts: { since?: string; timeoutMs?: number; filter?: string | object } = {}): Promise<any> {
    const filter = opts.filter;
    return this.request('GET', `${CLIENT}/sync`, undefined, {
      since: opts.since,
      timeout: String(opts.timeoutMs ?? 0),
      filter: filter === undefined ? undefined : typeof filter === 'string' ? filter : JSON.stringify(filter),
    });
  }

  /**
   * Syncs until `predicate` accepts a timeline event of a joined room, and consumes
   * that event. Events seen but not consumed stay queued for the next wait, so two
   * consecutive waits never miss an event that arrived in the same sync batch or in
   * between. The first wait starts from now unless `fromStart`, which also looks at
   * the recent timelines an initial sync returns.
   */
  async waitForEvent(
    predicate: (ev: any, roomId: string) => boolean,
    opts: WaitOptions = {},
  ): Promise<{ event: any; roomId: string }> {
    const timeoutMs = opts.timeoutMs ?? 20_000;
    const deadline = Date.now() + timeoutMs;

    if (opts.fromStart) {
      const initial = await this.sync();
      this.#since ??= initial.next_batch;
      this.#enqueue(initial);
    } else if (this.#since === undefined) {
      // Only the position matters here; a one-event timeline keeps the sync cheap.
      const initial = await this.sync({ filter: { room: { timeline: { limit: 1 } } } });
      this.#since = initial.next_batch;
    }

    for (;;) {
      const index = this.#pending.findIndex(({ event, roomId }) => predicate(event, roomId));
      if (index >= 0) {
        const [hit] = this.#pending.splice(index, 1);
        if (hit) return hit;
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) break;
      const res = await this.sync({ since: this.#since, timeoutMs: Math.min(remaining, 5_000) });
      this.#since = res.next_batch;
      this.#enqueue(res);
    }
    const recent = this.#pending
      .slice(-5)
      .map(({ event, roomId }) => `${roomId} ${event?.type} from ${event?.sender}`);
    throw new Error(
      `${this.userId}: no matching event within ${timeoutMs} ms; ` +
        `${this.#pending.length} unmatched event(s) queued, latest: [${recent.join('; ')}]; ` +
        `predicate: ${predicate.toString().slice(0, 200)}`,
    );
  }

  /** Forgets events seen but not consumed by waitForEvent: later waits see only newer ones. */
  discardPending(): void {
    this.#pending = [];
  }

  #enqueue(syncResponse: any): void {
    const joined: Record<string, any> = syncResponse?.rooms?.join ?? {};
    for (const [roomId, room] of Object.entries(joined)) {
      for (const event of room?.timeline?.events ?? []) {
        // An initial sync (fromStart) can repeat events that are already queued.
        const id = event?.event_id;
        if (typeof id === 'string') {
          if (this.#queuedIds.has(id)) continue;
          this.#queuedIds.add(id);
        }
        this.#pending.push({ event, roomId });
      }
    }
  }

  async joinedRooms(): Promise<string[]> {
    const res = await this.request<{ joined_rooms: string[] }>('GET', `${CLIENT}/joined_rooms`);
    return res.joined_rooms;
  }

  async roomState(roomId: string): Promise<any[]> {
    return this.request<any[]>('GET', `${CLIENT}/rooms/${enc(roomId)}/state`);
  }
}
