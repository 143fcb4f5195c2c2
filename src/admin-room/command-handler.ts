import type { EventHandler } from '../appservice/event-router.ts';
import type { CommandContext } from '../commands/context.ts';
import { dispatch } from '../commands/dispatch.ts';
import { STEWARD_MARKER } from '../homeserver/client-api.ts';
import type { Logger } from '../log.ts';
import type { MatrixEvent } from '../store/inbox.ts';
import { escapeHtml } from '../util/html.ts';
import type { Messenger } from './messenger.ts';

export const COMMAND_PREFIX = '!';

export interface AdminRoomDeps {
  readonly adminRoomId: string;
  readonly botUserId: string;
  readonly admins: readonly string[];
  readonly messenger: Messenger;
  readonly log: Logger;
  /** The context shared by every room command; sender and event are filled in per command. */
  readonly baseContext: Omit<CommandContext, 'frontEnd' | 'sender' | 'roomId' | 'commandEventId'>;
}

/** Who may command Steward: listed admins, in the admin room, in person. */
export function authorise(event: MatrixEvent, deps: Pick<AdminRoomDeps, 'botUserId' | 'admins'>): 'ok' | 'ignore' | 'refuse' {
  if (event.sender === deps.botUserId) return 'ignore';
  // Sent by Steward while acting as a local user: never a command, even if that user is an admin.
  if (event.content[STEWARD_MARKER] === true) return 'ignore';
  return event.sender !== undefined && deps.admins.includes(event.sender) ? 'ok' : 'refuse';
}

export function adminRoomCommands(deps: AdminRoomDeps): EventHandler {
  const log = deps.log.child({ module: 'admin-room' });
  return {
    name: 'admin-room-commands',
    wants: (event, kind) => kind === 'pdu' && event.room_id === deps.adminRoomId && event.type === 'm.room.message',
    async handle(event) {
      const body = event.content.body;
      const relation = event.content['m.relates_to'] as { rel_type?: string } | undefined;
      if (typeof body !== 'string' || !body.startsWith(COMMAND_PREFIX) || relation?.rel_type === 'm.replace') return;
      const line = body.slice(COMMAND_PREFIX.length).trim();
      if (!line || !/^[a-z]/i.test(line)) return; // "!!!" or "! " is not a command
      const who = authorise(event, deps);
      if (who === 'ignore') return;
      const eventId = event.event_id!;
      if (who === 'refuse') {
        log.warn({ sender: event.sender, roomId: event.room_id, command: line.split(/\s/)[0] }, 'refused a command from a non-admin');
        await deps.messenger.notice(deps.adminRoomId, { text: 'Only the admins listed in the config can command Steward.', html: 'Only the admins listed in the config can command Steward.' }, eventId);
        return;
      }
      log.info({ sender: event.sender, command: line.slice(0, 200) }, 'command');
      const outcome = await dispatch(line, { ...deps.baseContext, frontEnd: 'room', sender: event.sender, roomId: deps.adminRoomId, commandEventId: eventId });
      if (!outcome.ok) {
        if (outcome.error.code === 'E_BUG') log.error({ detail: outcome.error.log }, 'command failed with a bug');
        else log.info({ code: outcome.error.code, detail: outcome.error.log }, 'command refused');
        await deps.messenger.notice(deps.adminRoomId, { text: `❌ ${outcome.error.human}`, html: `❌ ${escapeHtml(outcome.error.human).replace(/\n/g, '<br>')}` }, eventId);
        await deps.messenger.react(deps.adminRoomId, eventId, '❌');
        return;
      }
      if (outcome.value.kind === 'reply') {
        await deps.messenger.notice(deps.adminRoomId, outcome.value, eventId);
        await deps.messenger.react(deps.adminRoomId, eventId, '✅');
      }
      // A job reports through the progress renderer; a repeated delivery found the existing job.
    },
  };
}
