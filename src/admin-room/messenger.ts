import type { ClientApi } from '../homeserver/client-api.ts';
import type { Logger } from '../log.ts';

export interface Rich {
  readonly text: string;
  readonly html: string;
}

/**
 * The bot's voice: notices with HTML and plain text, replies, edits, reactions. Sending never
 * throws; a failure is logged and answered with undefined, because a lost notice must not sink
 * the work it reports on.
 */
export class Messenger {
  private readonly client: ClientApi;
  private readonly log: Logger;
  constructor(client: ClientApi, log: Logger) {
    this.client = client;
    this.log = log.child({ module: 'messenger' });
  }

  notice(roomId: string, message: Rich, replyTo?: string): Promise<string | undefined> {
    return this.send(roomId, 'm.room.message', {
      msgtype: 'm.notice',
      body: message.text,
      format: 'org.matrix.custom.html',
      formatted_body: message.html,
      ...(replyTo ? { 'm.relates_to': { 'm.in_reply_to': { event_id: replyTo } } } : {}),
    });
  }

  /** Replaces the content of an earlier notice of ours (m.replace); clients show the newest. */
  edit(roomId: string, eventId: string, message: Rich): Promise<string | undefined> {
    const content = { msgtype: 'm.notice', body: message.text, format: 'org.matrix.custom.html', formatted_body: message.html };
    return this.send(roomId, 'm.room.message', {
      ...content,
      body: `* ${message.text}`,
      'm.new_content': content,
      'm.relates_to': { rel_type: 'm.replace', event_id: eventId },
    });
  }

  react(roomId: string, eventId: string, key: string): Promise<string | undefined> {
    return this.send(roomId, 'm.reaction', { 'm.relates_to': { rel_type: 'm.annotation', event_id: eventId, key } });
  }

  private async send(roomId: string, type: string, content: Record<string, unknown>): Promise<string | undefined> {
    const sent = await this.client.sendEvent(roomId, type, content);
    if (sent.ok) return sent.value.event_id;
    this.log.warn({ roomId, type, detail: sent.error.log }, 'could not send to the room');
    return undefined;
  }
}
