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
// Nothing but the token: no rooms, presence or account data.
const TOKEN_ONLY_FILTER = JSON.stringify({
  room: { rooms: [], account_data: { types: [] }, ephemeral: { types: [] }, state: { types: [] }, timeline: { types: [] } },
  presence: { types: [] },
  account_data: { types: [] },
});

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
   * The server's current stream position, as a token `/messages` takes as `from`: a sync of the
   * bot that asks for nothing but `next_batch`.
   */
  async liveToken(opts: RequestOptions = {}): Promise<Result<string, HttpFailure>> {
    const answer = await this.http.request<{ next_batch?: unknown }>('GET', '/_matrix/client/v3/sync', {
      ...opts,
      query: { timeout: 0, set_presence: 'offline', filter: TOKEN_ONLY_FILTER },
    });
    if (!answer.ok) return answer;
    const token = answer.value.next_batch;
    if (typeof token !== 'string' || token.length === 0) {
      return { ok: false, error: { status: 200, code: 'E_BAD_ANSWER', human: '/sync answered without next_batch', log: '/sync answered without next_batch', errcode: undefined, body: undefined } };
    }
    return { ok: true, value: token };
  }
}
