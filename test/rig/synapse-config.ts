// Builds homeserver.yaml and its log config for a throwaway test Synapse.
// Both are written as JSON, which is valid YAML, so the rig needs no YAML library.

export interface ConfigInputs {
  serverName: string;
  dir: string;
  httpPort: number;
  /** Absent when the server does not federate. */
  tls?: { port: number; bindAddresses: string[]; certPath: string; keyPath: string };
  dbPath: string;
  /** Synapse's `database` section; default SQLite at dbPath. */
  database?: Record<string, unknown>;
  signingKeyPath: string;
  logConfigPath: string;
  registrationSharedSecret: string;
  macaroonSecretKey: string;
  formSecret: string;
  appserviceRegistrations: string[];
  extraConfig: Record<string, unknown>;
}

const UNLIMITED = { per_second: 9999, burst_count: 9999 };

// Defaults are tuned for abuse on the open internet; tests create rooms, join over
// federation and register users in bursts, and the remote-join default alone
// (0.01/s) would stall a test for minutes.
const RATE_LIMITS: Record<string, unknown> = {
  rc_message: UNLIMITED,
  rc_registration: UNLIMITED,
  rc_registration_token_validity: UNLIMITED,
  rc_room_creation: UNLIMITED,
  rc_joins: { local: UNLIMITED, remote: UNLIMITED },
  rc_joins_per_room: UNLIMITED,
  rc_invites: { per_room: UNLIMITED, per_user: UNLIMITED, per_issuer: UNLIMITED },
  rc_third_party_invite: UNLIMITED,
  rc_login: { address: UNLIMITED, account: UNLIMITED, failed_attempts: UNLIMITED },
  rc_admin_redaction: UNLIMITED,
  rc_3pid_validation: UNLIMITED,
  rc_presence: { per_user: UNLIMITED },
  rc_media_create: UNLIMITED,
  rc_delayed_event_mgmt: UNLIMITED,
  rc_reports: UNLIMITED,
  rc_user_directory: UNLIMITED,
  rc_profile: UNLIMITED,
  rc_key_requests: UNLIMITED,
  rc_federation: {
    window_size: 1000,
    sleep_limit: 1000,
    sleep_delay: 1,
    reject_limit: 10000,
    concurrent: 100,
  },
};

export function homeserverConfig(inputs: ConfigInputs): Record<string, unknown> {
  const listeners: unknown[] = [
    {
      type: 'http',
      port: inputs.httpPort,
      bind_addresses: ['127.0.0.1'],
      tls: false,
      x_forwarded: false,
      resources: [{ names: ['client', 'federation'], compress: false }],
    },
  ];
  const tlsSettings: Record<string, unknown> = {};
  if (inputs.tls) {
    listeners.push({
      type: 'http',
      port: inputs.tls.port,
      bind_addresses: inputs.tls.bindAddresses,
      tls: true,
      x_forwarded: false,
      resources: [{ names: ['client', 'federation'], compress: false }],
    });
    tlsSettings['tls_certificate_path'] = inputs.tls.certPath;
    tlsSettings['tls_private_key_path'] = inputs.tls.keyPath;
  }

  return {
    server_name: inputs.serverName,
    public_baseurl: `http://127.0.0.1:${inputs.httpPort}/`,
    listeners,
    ...tlsSettings,
    database: inputs.database ?? { name: 'sqlite3', args: { database: inputs.dbPath } },
    log_config: inputs.logConfigPath,
    media_store_path: `${inputs.dir}/media_store`,
    signing_key_path: inputs.signingKeyPath,
    registration_shared_secret: inputs.registrationSharedSecret,
    macaroon_secret_key: inputs.macaroonSecretKey,
    form_secret: inputs.formSecret,
    report_stats: false,
    enable_metrics: false,
    enable_registration: true,
    enable_registration_without_verification: true,
    bcrypt_rounds: 4,
    // Only loopback peers exist; a notary would be an outside address.
    trusted_key_servers: [],
    suppress_key_server_warning: true,
    federation_verify_certificates: false,
    // The default blocklist covers 127.0.0.0/8; the allowlist takes precedence.
    ip_range_whitelist: ['127.0.0.0/8', '::1/128'],
    // After a peer was down (e.g. restarted by a test), retry it within a second
    // instead of the default ten minutes.
    federation: { destination_min_retry_interval: '1s' },
    serve_server_wellknown: false,
    presence: { enabled: true },
    app_service_config_files: inputs.appserviceRegistrations,
    ...RATE_LIMITS,
    ...inputs.extraConfig,
  };
}

export const LOG_FORMAT =
  '%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s';

/**
 * Synapse's generated log config, minus its buffering handler: tests tail this file
 * and must see INFO lines (access log included) as they happen, not up to 5 s later.
 * No `request` filter is declared because Synapse ≥1.19 injects `%(request)s`
 * through a log record factory; the generated config no longer has one either.
 */
export function logConfig(logPath: string): Record<string, unknown> {
  return {
    version: 1,
    formatters: { precise: { format: LOG_FORMAT } },
    handlers: {
      file: {
        class: 'logging.FileHandler',
        formatter: 'precise',
        filename: logPath,
        encoding: 'utf8',
      },
    },
    loggers: {
      // DEBUG here would log access tokens.
      'synapse.storage.SQL': { level: 'INFO' },
    },
    root: { level: 'INFO', handlers: ['file'] },
    disable_existing_loggers: false,
  };
}
