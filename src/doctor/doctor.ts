import { runChecks, type CheckResult } from './check.ts';
import { allChecks, homeserverCheck, type DoctorDeps } from './checks.ts';

/** What commands see: run every check once. */
export interface Doctor {
  run(): Promise<CheckResult[]>;
}

export function createDoctor(deps: DoctorDeps): Doctor {
  return {
    async run() {
      // Reachability first: without it the checks that need the homeserver would only time out.
      const [reachable] = await runChecks([homeserverCheck(deps)]);
      const rest = allChecks(deps);
      if (reachable!.status === 'ok') return [reachable!, ...(await runChecks(rest))];
      const local = await runChecks(rest.filter((c) => !c.needsHomeserver));
      const skipped: CheckResult[] = rest.filter((c) => c.needsHomeserver).map((c) => ({ title: c.title, status: 'warn', detail: 'not checked: the homeserver does not answer' }));
      return [reachable!, ...local, ...skipped];
    },
  };
}
