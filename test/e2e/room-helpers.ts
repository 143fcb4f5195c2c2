// Talking to Steward the way an admin does: type in the admin room, read the bot's answers.
import type { MatrixTestClient } from '../rig/client.ts';

export function isReplyTo(ev: any, eventId: string): boolean {
  return ev?.content?.['m.relates_to']?.['m.in_reply_to']?.event_id === eventId;
}

export function isReactionTo(ev: any, eventId: string, key?: string): boolean {
  const rel = ev?.content?.['m.relates_to'];
  return ev?.type === 'm.reaction' && rel?.event_id === eventId && (key === undefined || rel?.key === key);
}

/** Sends a command and waits for the bot's first reply to it. */
export async function command(client: MatrixTestClient, roomId: string, botUserId: string, text: string, timeoutMs = 20_000): Promise<{ eventId: string; reply: any }> {
  const eventId = await client.sendText(roomId, text);
  const { event } = await client.waitForEvent((ev, room) => room === roomId && ev.sender === botUserId && ev.type === 'm.room.message' && isReplyTo(ev, eventId), { timeoutMs });
  return { eventId, reply: event };
}

/** Waits for a reply to `eventId` whose body matches. */
export async function replyMatching(client: MatrixTestClient, roomId: string, botUserId: string, eventId: string, pattern: RegExp, timeoutMs = 60_000): Promise<any> {
  const { event } = await client.waitForEvent(
    (ev, room) => room === roomId && ev.sender === botUserId && isReplyTo(ev, eventId) && pattern.test(String(ev.content?.body ?? '')),
    { timeoutMs },
  );
  return event;
}

/** Every event of the room, oldest first, via /messages (independent of any sync position). */
export async function roomHistory(client: MatrixTestClient, roomId: string): Promise<any[]> {
  const events: any[] = [];
  let from: string | undefined;
  for (;;) {
    const page = await client.request('GET', `/_matrix/client/v3/rooms/${encodeURIComponent(roomId)}/messages`, undefined, { dir: 'b', limit: '1000', ...(from ? { from } : {}) });
    events.push(...page.chunk);
    if (!page.end || page.chunk.length === 0) break;
    from = page.end;
  }
  return events.reverse();
}
