import { cancelCommand, helpCommand, jobCommand, jobsCommand, statusCommand } from './core-commands.ts';
import { dumpRoomsCommand, dumpUsersCommand } from '../dump/dump-commands.ts';
import { snapshotCommand } from '../snapshot/snapshot-command.ts';
import { RECOVERY_COMMANDS } from '../recovery/recovery-commands.ts';
import { LINKED_COMMANDS } from '../linked/commands.ts';
import { FED_COMMANDS } from '../fed/fed-commands.ts';
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
  doctorCommand,
];
