import { cancelCommand, helpCommand, jobCommand, jobsCommand, statusCommand } from './core-commands.ts';
import { dumpRoomsCommand, dumpUsersCommand } from '../dump/dump-commands.ts';
import { snapshotCommand } from '../snapshot/snapshot-command.ts';
import { RECOVERY_COMMANDS } from '../recovery/recovery-commands.ts';
import { LINKED_COMMANDS } from '../linked/commands.ts';
import { FED_COMMANDS } from '../federation-commands/fed-commands.ts';
import { ARCHIVE_COMMANDS } from '../archive/archive-commands.ts';
import { RESTORE_COMMANDS } from '../restore/restore-commands.ts';
import { restoreRoomsCommand } from '../restore/restore-rooms-command.ts';
import { archiveSearchCommand } from '../archive/archive-search-command.ts';
import { doctorCommand } from '../doctor/doctor-command.ts';
import type { Command } from './types.ts';

/** Every command, for both front ends; each declares where it may run. */
export const ALL_COMMANDS: readonly Command[] = [
  helpCommand,
  statusCommand,
  jobsCommand,
  jobCommand,
  cancelCommand,
  dumpUsersCommand,
  dumpRoomsCommand,
  snapshotCommand,
  ...RECOVERY_COMMANDS,
  ...LINKED_COMMANDS,
  ...FED_COMMANDS,
  ...ARCHIVE_COMMANDS,
  ...RESTORE_COMMANDS,
  restoreRoomsCommand,
  archiveSearchCommand,
  doctorCommand,
];
