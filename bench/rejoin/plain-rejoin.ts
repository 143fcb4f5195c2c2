// The baseline for bench/rejoin: what the blog's script does, minus logging in as users — the same
// federation requests (timestamp_to_event, /state, /event, signed with the homeserver's key by the same
// client) and the same joins through the appservice, with the same concurrency, and nothing else:
// no event verification, no user checks, no idempotency checks, no store, no report.
import type { FederationClient } from '../../src/federation/federation-client.ts';
import { forEachLimit } from '../lib/pool.ts';
import { callOk } from '../lib/http.ts';

export interface PlainRoom {
  readonly roomId: string;
  readonly server: string;
}

/** A counting semaphore: at most `n` holders at once. */
function semaphore(n: number): <T>(fn: () => Promise<T>) => Promise<T> {
  let active = 0;
  const waiting: (() => void)[] = [];
  return async (fn) => {
    if (active >= n) await new Promise<void>((resolve) => waiting.push(resolve));
    else active += 1;
    try {
      return await fn();
    } finally {
      const next = waiting.shift();
      if (next) next();
      else active -= 1;
    }
  };
}

export async function plainRejoin(opts: {
  fed: FederationClient;
  clientUrl: string;
  asToken: string;
  ownServer: string;
  rooms: readonly PlainRoom[];
  roomConcurrency: number;
  joinConcurrency: number;
}): Promise<{ joined: number }> {
  const joinSlot = semaphore(opts.joinConcurrency);
  let joined = 0;
  const join = (roomId: string, via: string, user: string): Promise<unknown> =>
    joinSlot(() => callOk('POST', `${opts.clientUrl}/_matrix/client/v3/join/${encodeURIComponent(roomId)}?via=${encodeURIComponent(via)}&user_id=${encodeURIComponent(user)}`, { token: opts.asToken, body: {} }));
  await forEachLimit(opts.rooms, opts.roomConcurrency, async ({ roomId, server }) => {
    const room = encodeURIComponent(roomId);
    const latest = await opts.fed.request<{ event_id: string }>(server, 'GET', `/_matrix/federation/v1/timestamp_to_event/${room}?dir=b&ts=${Date.now()}`);
    if (!latest.ok) throw new Error(`timestamp_to_event ${roomId}: ${latest.error.log}`);
    const state = await opts.fed.request<{ pdus: { type: string; state_key?: string; content?: { membership?: string } }[] }>(server, 'GET', `/_matrix/federation/v1/state/${room}?event_id=${encodeURIComponent(latest.value.event_id)}`);
    if (!state.ok) throw new Error(`state ${roomId}: ${state.error.log}`);
    // /state is the state before the event; the event itself may be a join.
    const event = await opts.fed.request<{ pdus: { type: string; state_key?: string; content?: { membership?: string } }[] }>(server, 'GET', `/_matrix/federation/v1/event/${encodeURIComponent(latest.value.event_id)}`);
    if (!event.ok) throw new Error(`event ${roomId}: ${event.error.log}`);
    const users = [...state.value.pdus, ...event.value.pdus]
      .filter((p) => p.type === 'm.room.member' && p.content?.membership === 'join' && p.state_key?.endsWith(`:${opts.ownServer}`))
      .map((p) => p.state_key!)
      .filter((u, i, all) => all.indexOf(u) === i);
    const [first, ...rest] = users;
    if (!first) return;
    await join(roomId, server, first);
    await Promise.all(rest.map((u) => join(roomId, server, u)));
    joined += users.length;
  });
  return { joined };
}
