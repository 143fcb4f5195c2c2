import { escapeHtml } from '../util/html.ts';

export type CheckStatus = 'ok' | 'warn' | 'fail';

/** One line of the doctor's report: what was checked, what was found, and how to fix it. */
export interface CheckResult {
  readonly status: CheckStatus;
  readonly title: string;
  readonly detail: string;
  /** What to do about a warning or failure. */
  readonly fix?: string;
}

export type CheckOutcome = Omit<CheckResult, 'title'>;

/** A check: independent of the others, told to stop through the signal when its time is up. */
export interface DoctorCheck {
  readonly title: string;
  /** Default 20 s. */
  readonly timeoutMs?: number;
  /** Skipped (⚠️ "not checked") when the homeserver does not answer, instead of timing out. */
  readonly needsHomeserver?: boolean;
  /** One check may report several lines (one per log source). */
  run(signal: AbortSignal): Promise<CheckOutcome | CheckResult[]>;
}

export const ICON: Record<CheckStatus, string> = { ok: '✅', warn: '⚠️', fail: '❌' };

const DEFAULT_TIMEOUT_MS = 20_000;

/** Runs every check at once, each bounded in time; a check that throws or hangs fails on its own. */
export async function runChecks(checks: readonly DoctorCheck[]): Promise<CheckResult[]> {
  const results = await Promise.all(checks.map(async (check): Promise<CheckResult[]> => {
    const timeoutMs = check.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<CheckOutcome>((resolve) => {
      timer = setTimeout(() => {
        controller.abort();
        resolve({ status: 'fail', detail: `no answer within ${Math.round(timeoutMs / 1000)} s` });
      }, timeoutMs);
    });
    try {
      const outcome = await Promise.race([check.run(controller.signal), timeout]);
      return Array.isArray(outcome) ? outcome : [{ title: check.title, ...outcome }];
    } catch (err) {
      return [{ title: check.title, status: 'fail', detail: `the check itself failed: ${(err as Error).message ?? String(err)}` }];
    } finally {
      clearTimeout(timer);
    }
  }));
  return results.flat();
}

export function worst(results: readonly CheckResult[]): CheckStatus {
  return results.some((r) => r.status === 'fail') ? 'fail' : results.some((r) => r.status === 'warn') ? 'warn' : 'ok';
}

export function renderReport(results: readonly CheckResult[], note?: string): { text: string; html: string } {
  const count = (s: CheckStatus): number => results.filter((r) => r.status === s).length;
  const summary = `Doctor: ${count('ok')} ✅ · ${count('warn')} ⚠️ · ${count('fail')} ❌`;
  const text = [
    summary,
    ...results.flatMap((r) => [`${ICON[r.status]} ${r.title}: ${r.detail}`, ...(r.fix && r.status !== 'ok' ? [`   fix: ${r.fix}`] : [])]),
    ...(note ? ['', note] : []),
  ].join('\n');
  const html = [
    `<p><b>${escapeHtml(summary)}</b></p><ul>`,
    ...results.map((r) => `<li>${ICON[r.status]} <b>${escapeHtml(r.title)}</b>: ${escapeHtml(r.detail)}${r.fix && r.status !== 'ok' ? `<br>fix: ${escapeHtml(r.fix)}` : ''}</li>`),
    '</ul>',
    ...(note ? [`<p>${escapeHtml(note)}</p>`] : []),
  ].join('');
  return { text, html };
}
