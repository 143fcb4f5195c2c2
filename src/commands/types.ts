import type { JobRecord } from '../jobs/job-store.ts';
import type { Result } from '../util/result.ts';
import type { CommandContext } from './context.ts';

export type ValueType = 'string' | 'int' | 'user' | 'room' | 'path' | 'boolean';

export interface ParamSpec {
  readonly name: string;
  readonly type: Exclude<ValueType, 'boolean'>;
  readonly description: string;
  readonly optional?: boolean;
  /** Takes every remaining word (joined by spaces); only for the last parameter. */
  readonly rest?: boolean;
}

export interface FlagSpec {
  readonly name: string;
  readonly type: ValueType;
  readonly description: string;
  readonly repeatable?: boolean;
  readonly min?: number;
  readonly max?: number;
}

/** Where a command may run. Some (key export) must never answer in a room. */
export type FrontEnd = 'room' | 'terminal';

/** A command's answer: something to show, or a job that the front end follows to its end. */
export type CommandOutput =
  | {
    readonly kind: 'reply'; readonly text: string; readonly html: string;
    /** The terminal's exit code for an answer that reports a problem (the doctor); default 0. */
    readonly exitCode?: number;
    /** Extra fields for `--json`. */
    readonly data?: Record<string, unknown>;
  }
  | { readonly kind: 'job'; readonly job: JobRecord; readonly created: boolean };

export interface Command {
  /** One or more words, e.g. "dump users". */
  readonly name: string;
  readonly summary: string;
  readonly description?: string;
  readonly params: readonly ParamSpec[];
  readonly flags: readonly FlagSpec[];
  readonly frontEnds: readonly FrontEnd[];
  readonly examples?: readonly string[];
  /** Needs no homeserver: the terminal runs it even while Synapse is down (e.g. key export for a migration). */
  readonly offline?: boolean;
  execute(ctx: CommandContext, input: CommandInput): Promise<Result<CommandOutput>>;
}

export type Value = string | number | boolean;

/** Parsed, type-checked arguments; accessors keep executors free of parsing. */
export class CommandInput {
  readonly params: ReadonlyMap<string, Value>;
  readonly flags: ReadonlyMap<string, Value | Value[]>;

  constructor(params: Map<string, Value>, flags: Map<string, Value | Value[]>) {
    this.params = params;
    this.flags = flags;
  }

  param(name: string): string | undefined {
    const v = this.params.get(name);
    return v === undefined ? undefined : String(v);
  }

  string(flag: string): string | undefined {
    const v = this.flags.get(flag);
    return v === undefined || Array.isArray(v) ? undefined : String(v);
  }

  int(flag: string): number | undefined {
    const v = this.flags.get(flag);
    return typeof v === 'number' ? v : undefined;
  }

  bool(flag: string): boolean {
    return this.flags.get(flag) === true;
  }

  list(flag: string): string[] {
    const v = this.flags.get(flag);
    return v === undefined ? [] : Array.isArray(v) ? v.map(String) : [String(v)];
  }
}
