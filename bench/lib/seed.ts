// Seeds local users the way real ones look to a dump: two logged-in devices, an HTTP pusher
// and a piece of global account data each. Users are numbered, so a second call can top up.
import { callOk } from './http.ts';
import { forEachLimit } from './pool.ts';

export interface SeedTarget {
  readonly clientUrl: string;
  readonly serverName: string;
  /** Access token of a Synapse admin (creates the users through the admin API). */
  readonly adminToken: string;
}

export const SEED_PASSWORD = 'bench-password';
const enc = encodeURIComponent;

export function seededLocalpart(n: number): string {
  return `bench-${String(n).padStart(5, '0')}`;
}

export function seededUserId(n: number, serverName: string): string {
  return `@${seededLocalpart(n)}:${serverName}`;
}

/** The values seedUser writes for user `n`, for checking a dump against. */
export function seededValues(n: number): { pushkey: string; accountData: Record<string, unknown>; devices: string[] } {
  return {
    pushkey: `pk-${n}`,
    accountData: { n, note: `seeded account data of user ${n}` },
    devices: ['BENCHA', 'BENCHB'],
  };
}

export async function seedUser(t: SeedTarget, n: number): Promise<void> {
  const userId = seededUserId(n, t.serverName);
  const values = seededValues(n);
  await callOk('PUT', `${t.clientUrl}/_synapse/admin/v2/users/${enc(userId)}`, {
    token: t.adminToken,
    body: { password: SEED_PASSWORD, displayname: `Bench User ${n}` },
  });
  let token = '';
  for (const deviceId of values.devices) {
    const login = await callOk<{ access_token: string }>('POST', `${t.clientUrl}/_matrix/client/v3/login`, {
      body: {
        type: 'm.login.password',
        identifier: { type: 'm.id.user', user: seededLocalpart(n) },
        password: SEED_PASSWORD,
        device_id: deviceId,
        initial_device_display_name: `bench ${deviceId}`,
      },
    });
    token ||= login.access_token;
  }
  await callOk('POST', `${t.clientUrl}/_matrix/client/v3/pushers/set`, {
    token,
    body: {
      kind: 'http',
      app_id: 'bench.app',
      pushkey: values.pushkey,
      app_display_name: 'Bench',
      device_display_name: 'd',
      lang: 'en',
      data: { url: 'http://127.0.0.1:1/_matrix/push/v1/notify' },
    },
  });
  await callOk('PUT', `${t.clientUrl}/_matrix/client/v3/user/${enc(userId)}/account_data/bench.data`, {
    token,
    body: values.accountData,
  });
}

/** Seeds users first..last (inclusive) with `concurrency` users in flight; returns seconds taken. */
export async function seedUsers(
  t: SeedTarget,
  first: number,
  last: number,
  concurrency: number,
  onProgress?: (done: number, total: number) => void,
): Promise<number> {
  const started = performance.now();
  const total = last - first + 1;
  let done = 0;
  function* numbers(): Generator<number> {
    for (let n = first; n <= last; n++) yield n;
  }
  await forEachLimit(numbers(), concurrency, async (n) => {
    await seedUser(t, n);
    done += 1;
    onProgress?.(done, total);
  });
  return (performance.now() - started) / 1000;
}
