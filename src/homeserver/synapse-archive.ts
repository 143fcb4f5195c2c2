import type { HomeserverHttp, HttpFailure, RequestOptions } from './http.ts';
import { path } from './http.ts';
import type { Result } from '../util/result.ts';

export interface MessagesPage {
  readonly chunk?: unknown;
  readonly start?: string;
  /** Absent on the last page. */
  readonly end?: string;
}

/** Events in federation format, hashes and signatures kept. */
const FEDERATION_FORMAT = JSON.stringify({ event_format: 'federation' });
/** The admin API calls the archive reads a room's history with. */
export class SynapseArchiveApi {
  private readonly http: HomeserverHttp;
  constructor(http: HomeserverHttp) {
    this.http = http;
  }

  /**
   * One page forwards (dir=f never backfills). `from` may be a pagination token of an earlier
   * page or a live stream token; without it, the room's first event.
   */
  messages(roomId: string, from: string | undefined, limit: number, opts: RequestOptions = {}): Promise<Result<MessagesPage, HttpFailure>> {
    return this.http.request('GET', path`/_synapse/admin/v1/rooms/${roomId}/messages`, {
      ...opts,
      query: { dir: 'f', limit, from, filter: FEDERATION_FORMAT },
    });
  }

  /** The event as Synapse stores it: the original of a redacted event until Synapse censors it. */
  fetchEvent(eventId: string, opts: RequestOptions = {}): Promise<Result<{ event?: unknown }, HttpFailure>> {
    return this.http.request('GET', path`/_synapse/admin/v1/fetch_event/${eventId}`, opts);
  }

  /**
   * The room's current stream position, as a token `/messages` takes as `from`: the stream part
   * of the `start` of a one-event page backwards from the live end. (`/sync` is refused to an appservice's own user,
   * and its legacy `/events` fails when events arrive during the call.) Paging backwards lets
   * Synapse consider backfilling; it only does so when a gap is within twice the limit (1) of the
   * room's newest event, which a room it is fully in never has.
   */
  async roomToken(roomId: string, opts: RequestOptions = {}): Promise<Result<string, HttpFailure>> {
    const answer = await this.http.request<MessagesPage>('GET', path`/_synapse/admin/v1/rooms/${roomId}/messages`, { ...opts, query: { dir: 'b', limit: 1 } });
    if (!answer.ok) return answer;
    const token = typeof answer.value.start === 'string' ? streamPosition(answer.value.start) : undefined;
    if (token === undefined) {
      return { ok: false, error: { status: 200, code: 'E_BAD_ANSWER', human: '/messages answered without a start token', log: '/messages dir=b answered without start', errcode: undefined, body: undefined } };
    }
    return { ok: true, value: token };
  }
}

/**
 * A position in the event stream, from the room part of a token: Synapse hands `t<depth>-<stream>`
 * for a backwards page; `s<stream>` bounds the stream alone, so paging forwards from it yields
 * every event persisted after it, at whatever depth (`m…` is a multi-writer stream token).
 */
export function streamPosition(token: string): string | undefined {
  const room = roomKey(token);
  const topological = /^t-?\d+-(\d+)$/.exec(room);
  if (topological) return `s${topological[1]}`;
  return /^(s\d+|m\d+~[\d.~]+)$/.test(room) ? room : undefined;
}

/** The room part of a stream token (`s123` of `s123_4_0_…`): the rest moves with other streams. */
export function roomKey(token: string): string {
  return token.split('_')[0]!;
}
