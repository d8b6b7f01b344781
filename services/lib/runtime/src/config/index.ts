// Config: one typed, frozen object per service, parsed once with zod from defaults, an optional YAML/JSON
// file (SPARK_CONFIG_FILE or an explicit path) and SPARK_* environment variables (highest precedence).
// Every invalid key is reported at once (ConfigError); `loadConfigOrExit` prints them and exits non-zero.
import { readFileSync } from 'node:fs';

import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

import { ConfigError } from '../errors/index.js';

/** Fields every service shares. Services extend this shape with their own keys. */
export const baseServiceShape = {
  /** pino level. */
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Host the gRPC server binds. */
  grpcHost: z.string().min(1).max(255).default('127.0.0.1'),
  /** gRPC port; 0 picks a free one. */
  grpcPort: z.number().int().min(0).max(65535).default(0),
  /** Host the Prometheus /metrics HTTP server binds. */
  metricsHost: z.string().min(1).max(255).default('127.0.0.1'),
  /** /metrics port; 0 picks a free one. */
  metricsPort: z.number().int().min(0).max(65535).default(0),
  /** Redis URL (REDIS_URL is also read); empty means start a private redis-server (local mode only). */
  redisUrl: z.string().max(2048).default(''),
  /** Key prefix for every Redis key and BullMQ queue of this deployment. */
  redisPrefix: z
    .string()
    .regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'letters, digits and _ . : - only, at most 64')
    .default('spark'),
  /** Local mode: a single-machine cluster with authentication off. Never use it on a shared network. */
  localMode: z.boolean().default(false),
  /**
   * The single shared bearer token (back-compat mode): whoever presents it is the principal `shared-token`
   * with roles operator and service. Also what services present to each other unless authServiceToken is set.
   */
  authToken: z.string().max(4096).default(''),
  /** YAML/JSON file of principals (name, roles, tokens), re-read when it changes (see docs/operations.md). */
  authTokensFile: z.string().max(4096).default(''),
  /** JWKS file verifying OIDC/JWT bearer tokens, re-read when it changes (or use authJwksUrl). */
  authJwksFile: z.string().max(4096).default(''),
  /** JWKS URL (https; http only on a loopback host) verifying OIDC/JWT bearer tokens. */
  authJwksUrl: z.string().max(4096).default(''),
  /** Required `iss` of a JWT (required with a JWKS). */
  authJwtIssuer: z.string().max(1024).default(''),
  /** Required `aud` of a JWT (required with a JWKS). */
  authJwtAudience: z.string().max(1024).default(''),
  /** JWT claim holding the roles (array or space-separated string; dots walk into objects). */
  authJwtRolesClaim: z.string().min(1).max(256).default('roles'),
  /** JWT claim naming the principal (a job's owner). */
  authJwtNameClaim: z.string().min(1).max(256).default('sub'),
  /** How often the tokens file and JWKS file are checked for changes, in milliseconds. */
  authReloadMs: z.number().int().min(50).max(3_600_000).default(10_000),
  /** Token this service presents when it calls another service (default: authToken). */
  authServiceToken: z.string().max(8192).default(''),
  /**
   * File holding the token this service presents to others, re-read every authReloadMs (rotate a mounted
   * Secret without a restart); wins over authServiceToken.
   */
  authServiceTokenFile: z.string().max(4096).default(''),
  /** PEM files for TLS on the gRPC server (all three for mTLS; cert+key for server-only TLS). */
  tlsCertFile: z.string().max(4096).default(''),
  tlsKeyFile: z.string().max(4096).default(''),
  tlsCaFile: z.string().max(4096).default(''),
  /** Largest gRPC message accepted or sent, in bytes. */
  grpcMaxMessageBytes: z
    .number()
    .int()
    .min(1024)
    .max(1024 * 1024 * 1024)
    .default(64 * 1024 * 1024),
  /** How long a graceful shutdown may drain before it is forced, in milliseconds. */
  shutdownGraceMs: z.number().int().min(0).max(600_000).default(10_000),
};

/** The typed, frozen config of a service shape. */
export type ConfigOf<Shape extends z.ZodRawShape> = Readonly<z.infer<z.ZodObject<Shape>>>;

/** Schema of a "how often the active-job set is polled, in ms" key (services that follow active jobs). */
export function activePollMsKey(defaultMs = 250) {
  return z.number().int().min(10).max(60_000).default(defaultMs);
}

/** Schema of a "BullMQ lock of a running task (renewed while it runs), in ms" key. */
export function taskLockMsKey(defaultMs: number) {
  return z.number().int().min(1_000).max(3_600_000).default(defaultMs);
}

/** UPPER_SNAKE form of a camelCase key: `grpcPort` → `GRPC_PORT`. */
export function envKeyOf(key: string): string {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

type ZodDef = { type: string; innerType?: z.ZodType; element?: z.ZodType };

function baseTypeOf(schema: z.ZodType): string {
  let s: z.ZodType = schema;
  for (let i = 0; i < 16; i++) {
    const def = (s as unknown as { _zod: { def: ZodDef } })._zod.def;
    if ((def.type === 'optional' || def.type === 'default' || def.type === 'nullable') && def.innerType) {
      s = def.innerType;
      continue;
    }
    return def.type;
  }
  return 'unknown';
}

/** Converts an environment string to what the key's schema expects; leaves it as text when unsure. */
function coerceEnv(raw: string, schema: z.ZodType): unknown {
  switch (baseTypeOf(schema)) {
    case 'number': {
      const trimmed = raw.trim();
      return trimmed === '' ? raw : Number(trimmed);
    }
    case 'boolean': {
      const v = raw.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off', ''].includes(v)) return false;
      return raw;
    }
    case 'array':
      return raw
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean);
    default:
      return raw;
  }
}

export interface LoadConfigOptions {
  /** Environment to read (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** Config file path; defaults to $SPARK_CONFIG_FILE when set. */
  file?: string;
  /** Values applied over the defaults but under file and environment (e.g. what a launcher decided). */
  overrides?: Record<string, unknown>;
}

/**
 * Parses the config of `service` against `shape`. Throws ConfigError listing every problem:
 * unreadable file, unknown file keys, wrong types, out-of-range values.
 */
export function loadConfig<Shape extends z.ZodRawShape>(
  service: string,
  shape: Shape,
  options: LoadConfigOptions = {},
): Readonly<z.infer<z.ZodObject<Shape>>> {
  const env = options.env ?? process.env;
  const problems: string[] = [];
  const input: Record<string, unknown> = { ...(options.overrides ?? {}) };

  const file = options.file ?? env.SPARK_CONFIG_FILE;
  if (file) {
    try {
      const text = readFileSync(file, 'utf8');
      if (text.length > 1024 * 1024) throw new Error('larger than 1 MiB');
      const parsed: unknown = parseYaml(text);
      if (parsed !== null && parsed !== undefined) {
        if (typeof parsed !== 'object' || Array.isArray(parsed))
          throw new Error('top level must be a mapping');
        for (const [k, v] of Object.entries(parsed as Record<string, unknown>)) {
          if (!(k in shape)) problems.push(`${file}: unknown key "${k}"`);
          else input[k] = v;
        }
      }
    } catch (err) {
      problems.push(`config file ${file}: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  for (const [key, schema] of Object.entries(shape)) {
    const envName = `SPARK_${envKeyOf(key)}`;
    const raw = env[envName] ?? (key === 'redisUrl' ? env.REDIS_URL : undefined);
    if (raw !== undefined) input[key] = coerceEnv(raw, schema as z.ZodType);
  }

  const result = z.strictObject(shape).safeParse(input);
  if (!result.success) {
    for (const issue of result.error.issues) {
      const key = issue.path.map(String).join('.') || '(root)';
      const top = String(issue.path[0] ?? '');
      const where = top && top in shape ? ` (SPARK_${envKeyOf(top)})` : '';
      problems.push(`${key}${where}: ${issue.message}`);
    }
  }
  if (problems.length) throw new ConfigError(service, problems);
  return Object.freeze(result.data as z.infer<z.ZodObject<Shape>>);
}

/** A config with every default applied over `overrides`, frozen (tests, launchers, in-process services). */
export function configWithDefaults<Shape extends z.ZodRawShape>(
  shape: Shape,
  overrides: Partial<z.infer<z.ZodObject<Shape>>> = {},
): Readonly<z.infer<z.ZodObject<Shape>>> {
  return Object.freeze(z.strictObject(shape).parse(overrides) as z.infer<z.ZodObject<Shape>>);
}

/** `configWithDefaults` bound to one shape: the `xConfig(overrides)` function of a service. */
export function defaultsFor<Shape extends z.ZodRawShape>(
  shape: Shape,
): (overrides?: Partial<z.infer<z.ZodObject<Shape>>>) => ConfigOf<Shape> {
  return (overrides = {}) => configWithDefaults(shape, overrides);
}

/** Like loadConfig, but prints every problem to stderr and exits with status 2 on invalid config. */
export function loadConfigOrExit<Shape extends z.ZodRawShape>(
  service: string,
  shape: Shape,
  options: LoadConfigOptions = {},
): Readonly<z.infer<z.ZodObject<Shape>>> {
  try {
    return loadConfig(service, shape, options);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

/** Security check shared by every server: outside local mode a credential source or mTLS is required. */
export function assertServerSecurity(config: {
  localMode: boolean;
  authToken: string;
  authTokensFile?: string;
  authJwksFile?: string;
  authJwksUrl?: string;
  authJwtIssuer?: string;
  authJwtAudience?: string;
  tlsCaFile: string;
  tlsCertFile: string;
  tlsKeyFile: string;
}): void {
  const problems: string[] = [];
  const mtls = Boolean(config.tlsCaFile && config.tlsCertFile && config.tlsKeyFile);
  const jwks = Boolean(config.authJwksFile || config.authJwksUrl);
  if (!config.localMode && !config.authToken && !config.authTokensFile && !jwks && !mtls) {
    problems.push(
      'outside local mode one of authToken (SPARK_AUTH_TOKEN), authTokensFile (SPARK_AUTH_TOKENS_FILE), ' +
        'authJwksFile/authJwksUrl (SPARK_AUTH_JWKS_FILE/SPARK_AUTH_JWKS_URL) or mTLS files is required',
    );
  }
  if (config.authToken && config.authToken.length < 16) {
    problems.push('authToken (SPARK_AUTH_TOKEN): at least 16 characters');
  }
  if (config.authJwksFile && config.authJwksUrl) {
    problems.push('authJwksFile and authJwksUrl: set one, not both');
  }
  if (config.authJwksUrl) {
    let url: URL | null = null;
    try {
      url = new URL(config.authJwksUrl);
    } catch {
      problems.push('authJwksUrl (SPARK_AUTH_JWKS_URL): not a URL');
    }
    const loopback = url && ['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname);
    if (url && url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback)) {
      problems.push('authJwksUrl (SPARK_AUTH_JWKS_URL): must be https (http only on a loopback host)');
    }
  }
  if (jwks && (!config.authJwtIssuer || !config.authJwtAudience)) {
    problems.push(
      'authJwtIssuer and authJwtAudience (SPARK_AUTH_JWT_ISSUER/_AUDIENCE) are required with a JWKS',
    );
  }
  if (Boolean(config.tlsCertFile) !== Boolean(config.tlsKeyFile)) {
    problems.push('tlsCertFile and tlsKeyFile go together');
  }
  if (problems.length) throw new ConfigError('server security', problems);
}

export { z };
