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
   * The server's current stream position, as a token `/messages` takes as `from`. `/sync` is
   * refused to an appservice's own user (Synapse raises NotImplementedError); the legacy event
   * stream, asked without `from` and without waiting, answers with the current token as `end`.
   */
  async liveToken(opts: RequestOptions = {}): Promise<Result<string, HttpFailure>> {
    const answer = await this.http.request<{ end?: unknown }>('GET', '/_matrix/client/v3/events', { ...opts, query: { timeout: 0 } });
    if (!answer.ok) return answer;
    const token = answer.value.end;
    if (typeof token !== 'string' || token.length === 0) {
      return { ok: false, error: { status: 200, code: 'E_BAD_ANSWER', human: '/events answered without a token', log: '/events answered without end', errcode: undefined, body: undefined } };
    }
    return { ok: true, value: token };
  }
}
