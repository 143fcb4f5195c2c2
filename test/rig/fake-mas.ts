// A small stand-in for the Matrix Authentication Service: just the two endpoints Synapse's own
// delegated-auth code (synapse/api/auth/mas.py) calls. Synapse, configured with
// `matrix_authentication_service`, sends every non-appservice access token to
// `POST {endpoint}/oauth2/introspect` (form body `token=…`, authorised with the shared secret) and
// reads `/.well-known/openid-configuration` for `issuer` and `account_management_uri`. Tokens are
// minted by the test and map to {user, scopes, device}; Synapse does the rest (scope checks,
// admin scope, user and device lookups), which is what the tests exercise.
// Users and devices are created in Synapse the way MAS does it: through Synapse's
// `/_synapse/mas/provision_user` and `/_synapse/mas/upsert_device`, with the shared secret.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { RegisteredUser, SynapseInstance } from './synapse.ts';

export const CLIENT_API_SCOPE = 'urn:matrix:client:api:*';
export const DEVICE_SCOPE_PREFIX = 'urn:matrix:client:device:';
export const SYNAPSE_ADMIN_SCOPE = 'urn:synapse:admin:*';

interface Grant {
  readonly localpart: string;
  readonly scopes: readonly string[];
  readonly deviceId: string | undefined;
  active: boolean;
}

export interface MintOptions {
  /** Add Synapse's admin scope. */
  readonly admin?: boolean;
  /** Leave out the client API scope (Synapse then refuses the token outright). */
  readonly noClientApi?: boolean;
  /** Device bound to the token; it must exist in Synapse (see provisionUser). */
  readonly deviceId?: string;
}

export class FakeMas {
  readonly secret = randomBytes(24).toString('hex');
  /** Every request Synapse made, in order: proof that Synapse's delegated auth really ran. */
  readonly requests: { method: string; path: string }[] = [];
  /** Introspections per token (a token is counted, never logged). */
  readonly introspections = new Map<string, number>();
  readonly #grants = new Map<string, Grant>();
  readonly #server: Server;
  #url = '';

  private constructor() {
    this.#server = createServer((req, res) => {
      void this.#handle(req, res).catch(() => {
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
  }

  static async start(): Promise<FakeMas> {
    const mas = new FakeMas();
    await new Promise<void>((resolve) => mas.#server.listen(0, '127.0.0.1', resolve));
    mas.#server.unref();
    mas.#url = `http://127.0.0.1:${(mas.#server.address() as AddressInfo).port}`;
    return mas;
  }

  get url(): string {
    return this.#url;
  }

  /**
   * homeserver.yaml settings for delegated auth; Synapse refuses to start under MAS with password
   * login or open registration, which the rig's defaults enable.
   */
  synapseConfig(): Record<string, unknown> {
    return {
      matrix_authentication_service: { enabled: true, endpoint: `${this.#url}/`, secret: this.secret },
      enable_registration: false,
      password_config: { enabled: false },
    };
  }

  /** A token as MAS would issue it for `localpart`. */
  mint(localpart: string, opts: MintOptions = {}): string {
    const token = `mas_${randomBytes(18).toString('hex')}`;
    const scopes = [
      ...(opts.noClientApi ? [] : [CLIENT_API_SCOPE]),
      ...(opts.deviceId ? [`${DEVICE_SCOPE_PREFIX}${opts.deviceId}`] : []),
      ...(opts.admin ? [SYNAPSE_ADMIN_SCOPE] : []),
    ];
    this.#grants.set(token, { localpart, scopes, deviceId: opts.deviceId, active: true });
    return token;
  }

  revoke(token: string): void {
    const grant = this.#grants.get(token);
    if (grant) grant.active = false;
  }

  /**
   * Creates `localpart` in Synapse as MAS does (provision_user), gives it a device (upsert_device)
   * and mints a token for that device: a user of a MAS-backed server, ready for a test client.
   */
  async provisionUser(hs: SynapseInstance, localpart: string, opts: { admin?: boolean; displayname?: string } = {}): Promise<RegisteredUser> {
    await this.#callSynapse(hs, 'provision_user', { localpart, ...(opts.displayname ? { set_displayname: opts.displayname } : {}) });
    const deviceId = `MASDEV${randomBytes(4).toString('hex').toUpperCase()}`;
    await this.#callSynapse(hs, 'upsert_device', { localpart, device_id: deviceId });
    const accessToken = this.mint(localpart, { admin: opts.admin, deviceId });
    return { userId: `@${localpart}:${hs.serverName}`, accessToken, deviceId, password: '' };
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }

  async #callSynapse(hs: SynapseInstance, endpoint: string, body: Record<string, unknown>): Promise<void> {
    const res = await fetch(`${hs.clientUrl}/_synapse/mas/${endpoint}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${this.secret}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (!res.ok) throw new Error(`/_synapse/mas/${endpoint} on ${hs.name}: ${res.status} ${await res.text()}`);
    await res.body?.cancel();
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', this.#url).pathname;
    this.requests.push({ method: req.method ?? '', path });
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const json = (status: number, body: unknown): void => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (req.method === 'GET' && path === '/.well-known/openid-configuration') {
      return json(200, {
        issuer: `${this.#url}/`,
        account_management_uri: `${this.#url}/account/`,
        authorization_endpoint: `${this.#url}/authorize`,
        token_endpoint: `${this.#url}/oauth2/token`,
        introspection_endpoint: `${this.#url}/oauth2/introspect`,
      });
    }
    if (req.method === 'POST' && path === '/oauth2/introspect') {
      if (req.headers.authorization !== `Bearer ${this.secret}`) return json(401, { error: 'invalid_client' });
      const token = new URLSearchParams(Buffer.concat(chunks).toString('utf8')).get('token') ?? '';
      this.introspections.set(token, (this.introspections.get(token) ?? 0) + 1);
      const grant = this.#grants.get(token);
      if (!grant || !grant.active) return json(200, { active: false });
      return json(200, {
        active: true,
        scope: grant.scopes.join(' '),
        username: grant.localpart,
        sub: `mas-user-${grant.localpart}`,
        ...(grant.deviceId ? { device_id: grant.deviceId } : {}),
      });
    }
    json(404, { error: 'not_found' });
  }
}
