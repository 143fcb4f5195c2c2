/** `daily HH:MM`, server-local time. */
export interface DailySchedule {
  readonly kind: 'daily';
  readonly hour: number;
  readonly minute: number;
}

const DAILY = /^daily ([01]\d|2[0-3]):([0-5]\d)$/;
export const SCHEDULE_EXPECT = '"daily HH:MM" (24-hour, server-local time), e.g. "daily 03:00"';

export function parseSchedule(text: string): DailySchedule | undefined {
  const m = DAILY.exec(text);
  return m ? { kind: 'daily', hour: Number(m[1]), minute: Number(m[2]) } : undefined;
}

export function describeSchedule(s: DailySchedule): string {
  return `daily at ${String(s.hour).padStart(2, '0')}:${String(s.minute).padStart(2, '0')} (server-local time)`;
}

/** The latest slot at or before `now` (local time; across a DST change the wall-clock time is kept). */
export function latestSlot(s: DailySchedule, now: number): number {
  const d = new Date(now);
  const today = new Date(d.getFullYear(), d.getMonth(), d.getDate(), s.hour, s.minute, 0, 0).getTime();
  if (today <= now) return today;
  return new Date(d.getFullYear(), d.getMonth(), d.getDate() - 1, s.hour, s.minute, 0, 0).getTime();
}

export function nextSlot(s: DailySchedule, now: number): number {
  const d = new Date(now);
  const today = new Date(d.getFullYear(), d.getMonth(), d.getDate(), s.hour, s.minute, 0, 0).getTime();
  if (today > now) return today;
  return new Date(d.getFullYear(), d.getMonth(), d.getDate() + 1, s.hour, s.minute, 0, 0).getTime();
}

/**
 * Whether a run is due now: the latest slot has not been run. Without any record (the schedule
 * is new) nothing is due until the next slot: configuring a schedule does not start an archive.
 */
export function dueSlot(s: DailySchedule, lastSlotTs: number | undefined, now: number): { due: boolean; slot: number } {
  const slot = latestSlot(s, now);
  if (lastSlotTs === undefined) return { due: false, slot };
  return { due: lastSlotTs < slot, slot };
}
