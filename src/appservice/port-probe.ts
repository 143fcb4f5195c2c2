import { createServer } from 'node:net';

/**
 * Whether something already listens on the port: a brief bind, released at once. Lets start-up
 * fail on a taken port before waiting for the homeserver, and generate-registration warn early.
 */
export function portTaken(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'EADDRINUSE'));
    probe.listen({ port, host, exclusive: true }, () => probe.close(() => resolve(false)));
  });
}
