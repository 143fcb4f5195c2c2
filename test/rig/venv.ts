import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const DEFAULT_SYNAPSE_VERSION = '1.163.2';

/** The Python interpreter of the Synapse virtualenv that scripts/dev installs. */
export function synapsePython(): string {
  const venv =
    process.env['STEWARD_SYNAPSE_VENV'] ??
    path.join(os.homedir(), '.cache', 'steward', `synapse-venv-${DEFAULT_SYNAPSE_VERSION}`);
  const python = path.join(venv, 'bin', 'python');
  if (!existsSync(python)) {
    throw new Error(
      `Synapse virtualenv not found at ${venv} (no bin/python). ` +
        'Run `scripts/dev test` (or `scripts/dev env`) once to install it, ' +
        'or point STEWARD_SYNAPSE_VENV at an existing one.',
    );
  }
  return python;
}
