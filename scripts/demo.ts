// `scripts/dev demo`: a throwaway local Synapse with Steward registered and running, an admin
// account to log in with, and a few users to dump. Everything lives in a temp folder and is
// removed on Ctrl-C (set STEWARD_KEEP_RIG=1 to keep it).
import { startStewardWithSynapse } from '../test/rig/steward.ts';

const USERS = Number(process.env.DEMO_USERS ?? 25);

const setup = await startStewardWithSynapse({ synapse: { name: 'demo' }, config: { logging: { level: 'info' } } });
const { hs, steward, admin } = setup;
for (let i = 1; i <= USERS; i += 5) {
  await Promise.all(Array.from({ length: Math.min(5, USERS - i + 1) }, (_, k) => hs.registerUser(`demo${i + k}`, { displayname: `Demo user ${i + k}` })));
}

const cli = `node src/main.ts -c ${steward.configPath} -r ${steward.registrationPath}`;
process.stdout.write(`
Steward is running beside a throwaway Synapse (${hs.serverName}).

  Homeserver (client API):  ${hs.clientUrl}
  Log in as:                ${admin.userId}  password: ${admin.password}
  Admin room:               ${steward.adminRoomId}  (you are already joined; type !help)
  Steward's log:            ${steward.logPath}
  Dumps go to:              ${steward.dumpsDir}
  ${USERS} demo users:           @demo1 … @demo${USERS}

From another terminal, the same commands:
  ${cli} status
  ${cli} dump users

Ctrl-C stops Steward and Synapse and removes the folder.
`);

// The rig does not hold the event loop open for its children; this does, until Ctrl-C.
const keepAlive = setInterval(() => undefined, 60_000);
await new Promise<void>((resolve) => {
  process.once('SIGINT', () => resolve());
  process.once('SIGTERM', () => resolve());
});
clearInterval(keepAlive);
await steward.stop();
await hs.cleanup();
