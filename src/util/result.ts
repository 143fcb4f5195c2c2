/**
 * Expected failures are values, not exceptions: a Failure carries one message for the admin
 * (safe to post in a room) and one for the log (may carry detail such as status codes).
 * Exceptions are reserved for bugs.
 */
export interface Failure {
  /** Short, human, safe to show in the admin room: never contains secrets. */
  readonly human: string;
  /** Detail for the log line; defaults to the human message. */
  readonly log: string;
  /** Stable machine-readable code, e.g. M_FORBIDDEN, E_TIMEOUT, E_BAD_CONFIG. */
  readonly code: string;
}

export type Result<T, E extends Failure = Failure> =
  | { readonly ok: true; readonly value: T }
  | { readonly ok: false; readonly error: E };

export function ok<T>(value: T): Result<T, never> {
  return { ok: true, value };
}

export function failure(code: string, human: string, log?: string): Failure {
  return { code, human, log: log ?? human };
}

export function fail(code: string, human: string, log?: string): Result<never> {
  return { ok: false, error: failure(code, human, log) };
}

/** Message of an unknown thrown value, for log lines. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
