import type { ClientApi } from '../homeserver/client-api.ts';

const JOINED_TTL_MS = 10 * 60 * 1000;
const NOT_JOINED_TTL_MS = 60 * 1000;
const MAX_ENTRIES = 50_000;

/**
 * Whether a local user is joined to a room, asked as that user and remembered for a while. Needed
 * because Synapse answers 200 to a receipt from a user who cannot see the event (not in the room)
 * and silently drops it: Steward checks first instead of sending receipts into the void. Joins seen
 * by the invite handler forget the cached answer; a leave is noticed when the entry expires (until
 * then a mirrored receipt is merely dropped by Synapse).
 */
export class MembershipCache {
  private readonly client: ClientApi;
  private readonly now: () => number;
  private readonly entries = new Map<string, { joined: boolean; expires: number }>();

  constructor(client: ClientApi, now: () => number = Date.now) {
    this.client = client;
    this.now = now;
  }

  async isJoined(roomId: string, userId: string): Promise<boolean> {
    const key = `${roomId}\n${userId}`;
    const hit = this.entries.get(key);
    if (hit && hit.expires > this.now()) return hit.joined;
    const answer = await this.client.stateEvent<{ membership?: unknown }>(roomId, 'm.room.member', userId, { asUser: userId });
    // 403/404: not in the room (or never was). Other failures: assume joined and let the send tell.
    const joined = answer.ok ? answer.value.membership === 'join' : !(answer.error.status === 403 || answer.error.status === 404);
    if (this.entries.size >= MAX_ENTRIES) this.entries.clear();
    if (answer.ok || answer.error.status === 403 || answer.error.status === 404) {
      this.entries.set(key, { joined, expires: this.now() + (joined ? JOINED_TTL_MS : NOT_JOINED_TTL_MS) });
    }
    return joined;
  }

  forget(roomId: string, userId: string): void {
    this.entries.delete(`${roomId}\n${userId}`);
  }
}
