import { writeRegistration, loadRegistration } from './appservice/registration.ts';
import { ALL_COMMANDS } from './commands/all-commands.ts';
import { dispatch } from './commands/dispatch.ts';
import { commandHelp, overview } from './commands/help.ts';
import { findCommand } from './commands/parse.ts';
import { loadConfig } from './config/config.ts';
import { followInTerminal } from './cli/terminal-progress.ts';
import { finishedSummary } from './admin-room/progress-renderer.ts';
import { createLogger, routeLibraryLogs, routeProcessWarnings, type Logger } from './log.ts';
import { assembleCore, commandContext, ensureBotUser, startService } from './service.ts';
import { STEWARD_VERSION } from './version.ts';
import { portTaken } from './appservice/port-probe.ts';
import { waitForHomeserver } from './homeserver/wait-for-homeserver.ts';

interface GlobalOptions {
  config: string;
  registration: string;
  file: string | undefined;
  json: boolean;
  words: string[];
}

const SERVICE_HELP = `Steward ${STEWARD_VERSION}: caretaking for a Synapse homeserver, as an appservice.

Usage:
  steward run [-c config.yaml] [-r registration.yaml]     run the appservice (admin room commands)
  steward generate-registration [-c config.yaml] [-f registration.yaml]
                                                          write the registration file Synapse loads
  steward <command> [options] [-c …] [-r …] [--json]     run a command from the terminal
  steward help [<command>]                                this help, or one command's

Global options: -c/--config FILE (env STEWARD_CONFIG, default ./config.yaml),
  -r/--registration FILE (env STEWARD_REGISTRATION, default ./registration.yaml),
  --json (print the answer as JSON, for scripts).
`;

function parseGlobal(argv: string[]): GlobalOptions | string {
  const opts: GlobalOptions = {
    config: process.env.STEWARD_CONFIG ?? 'config.yaml',
    registration: process.env.STEWARD_REGISTRATION ?? 'registration.yaml',
    file: undefined,
    json: false,
    words: [],
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const takeValue = (): string | undefined => argv[++i];
    if (a === '-c' || a === '--config') {
      const v = takeValue();
      if (!v) return `${a} needs a file`;
      opts.config = v;
    } else if (a === '-r' || a === '--registration') {
      const v = takeValue();
      if (!v) return `${a} needs a file`;
      opts.registration = v;
    } else if (a === '-f' || a === '--file') {
      const v = takeValue();
      if (!v) return `${a} needs a file`;
      opts.file = v;
    } else if (a === '--json') {
      opts.json = true;
    } else if (a === '-h' || a === '--help') {
      opts.words.unshift('help');
    } else {
      opts.words.push(a);
    }
  }
  return opts;
}

async function main(argv: string[]): Promise<number> {
  const opts = parseGlobal(argv);
  if (typeof opts === 'string') {
    process.stderr.write(`${opts}\n\n${SERVICE_HELP}`);
    return 2;
  }
  const [first, ...rest] = opts.words;
  if (!first || (first === 'help' && rest.length === 0)) {
    process.stdout.write(`${SERVICE_HELP}\n${overview(ALL_COMMANDS, 'terminal').text}\n`);
    return 0;
  }
  if (first === 'help') {
    const found = findCommand(rest, ALL_COMMANDS);
    if (!found) {
      process.stderr.write(`No command "${rest.join(' ')}". Try steward help.\n`);
      return 2;
    }
    process.stdout.write(`${commandHelp(found.command, 'terminal').text}\n`);
    return 0;
  }
  if (first === '--version' || first === 'version') {
    process.stdout.write(`${STEWARD_VERSION}\n`);
    return 0;
  }

  // Until a command sets up its own logger, library warnings are kept off the terminal.
  routeProcessWarnings(createLogger({ level: 'warn', fd: 2 }));
  const config = await loadConfig(opts.config);
  if (!config.ok) {
    process.stderr.write(`${config.error.human}\n`);
    return 1;
  }

  if (first === 'generate-registration') {
    const file = opts.file ?? opts.registration;
    await writeRegistration(config.value, file);
    const { bindAddress, port, url } = config.value.appservice;
    process.stdout.write(`Wrote ${file} (mode 0600). Steward will listen on ${bindAddress}:${port} (appservice.port) and Synapse will reach it at ${url}. Add it to app_service_config_files in homeserver.yaml and restart Synapse.\n`);
    const taken = await portTaken(bindAddress, port);
    if (taken) process.stderr.write(`Warning: port ${port} is taken right now (another appservice?); \`steward run\` will fail unless it is free — set appservice.port and generate the registration again.\n`);
    return 0;
  }

  const registration = await loadRegistration(opts.registration);
  if (!registration.ok) {
    process.stderr.write(`${registration.error.human}\n`);
    return 1;
  }

  if (first === 'run') {
    const log = createLogger({ level: config.value.logging.level, fd: 1 });
    await routeLogs(log);
    const service = await startService(config.value, registration.value, log);
    if (!service.ok) {
      log.fatal({ code: service.error.code, detail: service.error.log }, 'cannot start');
      process.stderr.write(`${service.error.human}\n`);
      return 1;
    }
    await new Promise<void>((resolve) => {
      const shutdown = (signal: string): void => {
        log.info({ signal }, 'stopping; running jobs will resume at the next start');
        service.value.stop().then(resolve, resolve);
      };
      process.once('SIGTERM', () => shutdown('SIGTERM'));
      process.once('SIGINT', () => shutdown('SIGINT'));
    });
    return 0;
  }

  // Any other command runs here, in this process, with progress on stderr.
  // The terminal's stderr carries the progress bar; only warnings and worse unless asked for more.
  // Terminal commands never load the bridge or the bot SDK, so there are no library logs to route.
  const log = createLogger({ level: config.value.logging.level === 'info' ? 'warn' : config.value.logging.level, fd: 2 });
  routeProcessWarnings(log);
  const core = assembleCore(config.value, registration.value, log);
  try {
    const command = findCommand(opts.words, ALL_COMMANDS)?.command;
    // The terminal does not wait for Synapse; one probe tells "not reachable" from other problems.
    const reachable = command?.offline ? ({ ok: true } as const) : await waitForHomeserver(core.http, { waitMs: 0, log });
    if (!reachable.ok) {
      process.stderr.write(`${reachable.error.human}\n`);
      return 1;
    }
    const bot = command?.offline ? ({ ok: true } as const) : await ensureBotUser(core);
    if (!bot.ok) {
      process.stderr.write(`${bot.error.human}\n`);
      return 1;
    }
    const outcome = await dispatch(opts.words.join(' ').length ? quoteWords(opts.words) : '', { ...commandContext(core), frontEnd: 'terminal', sender: undefined, roomId: undefined, commandEventId: undefined });
    if (!outcome.ok) {
      if (opts.json) process.stdout.write(`${JSON.stringify({ ok: false, code: outcome.error.code, error: outcome.error.human })}\n`);
      else process.stderr.write(`${outcome.error.human}\n`);
      return ['E_USAGE', 'E_UNKNOWN_COMMAND', 'E_WRONG_FRONT_END'].includes(outcome.error.code) ? 2 : 1;
    }
    if (outcome.value.kind === 'reply') {
      const exitCode = outcome.value.exitCode ?? 0;
      process.stdout.write(opts.json ? `${JSON.stringify({ ok: exitCode === 0, text: outcome.value.text, ...outcome.value.data })}\n` : `${outcome.value.text}\n`);
      return exitCode;
    }
    const title = core.runner.title(outcome.value.job);
    const unfollow = followInTerminal(core.runner, outcome.value.job.id, title);
    let interrupted = false;
    const onSigint = (): void => {
      interrupted = true;
      process.stderr.write('\nstopping at the next checkpoint; run the same command again to resume\n');
      void core.runner.stop();
    };
    process.once('SIGINT', onSigint);
    const finished = await core.runner.runToEnd(outcome.value.job.id);
    process.off('SIGINT', onSigint);
    unfollow();
    if (interrupted && finished.state === 'running') return 130;
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ ok: finished.state === 'done', job: { ...finished, errors: core.jobs.errors(finished.id, 1000) } })}\n`);
    } else {
      process.stdout.write(`${finishedSummary(finished, title, core.jobs).text}\n`);
    }
    return finished.state === 'done' ? 0 : 1;
  } finally {
    core.db.close();
  }
}

async function routeLogs(log: Logger): Promise<void> {
  routeProcessWarnings(log);
  await routeLibraryLogs(log);
}

/** Re-joins argv into one command line that the shared tokenizer splits back the same way. */
function quoteWords(words: readonly string[]): string {
  return words.map((w) => (/^[\w@:.,/=+-]+$/.test(w) ? w : `'${w.replace(/'/g, `'\\''`)}'`)).join(' ');
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`steward: internal error: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exitCode = 70;
  },
);
