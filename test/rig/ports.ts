import net from 'node:net';

function listenOnce(host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    // ipv6Only keeps a "::1" probe from also claiming the IPv4 side, which would
    // hide a clash with a socket already bound on 127.0.0.1.
    server.listen({ host, port, exclusive: true, ipv6Only: host.includes(':') }, () => {
      const address = server.address();
      const bound = typeof address === 'object' && address !== null ? address.port : 0;
      server.close(() => resolve(bound));
    });
  });
}

// Ports already given out by this process. The kernel may hand a just-closed port to
// the next probe, and servers prepared in parallel must not end up sharing one.
const handedOut = new Set<number>();

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export async function freePort(): Promise<number> {
  return freePortOn(['127.0.0.1']);
}

/**
 * A port free on every one of `hosts` at once, for a server that binds several
 * loopback addresses on the same port (e.g. 127.0.0.1 and ::1 behind "localhost").
 */
export async function freePortOn(hosts: readonly string[]): Promise<number> {
  const [first, ...rest] = hosts;
  if (first === undefined) throw new Error('freePortOn needs at least one host');
  for (let attempt = 0; attempt < 20; attempt++) {
    const port = await listenOnce(first, 0);
    if (handedOut.has(port)) continue;
    try {
      for (const host of rest) await listenOnce(host, port);
      handedOut.add(port);
      return port;
    } catch {
      // Taken on one of the other addresses: draw again.
    }
  }
  throw new Error(`no port free on all of ${hosts.join(', ')} after 20 attempts`);
}

/** Whether this machine lets us listen on `host` (e.g. "::1" is absent without IPv6). */
export async function canListenOn(host: string): Promise<boolean> {
  try {
    await listenOnce(host, 0);
    return true;
  } catch {
    return false;
  }
}
