// Callers as principals. A gRPC call's bearer token becomes a Principal (a name and roles) through one of:
// an OIDC/JWT access token verified against a JWKS (a file, re-read when it changes, or an https URL, with
// the configured issuer and audience; roles from a claim), a tokens file (YAML or JSON: principals with
// their roles and one or more tokens, re-read when it changes), or the single shared token (back-compat:
// the principal `shared-token` with roles operator and service). With mTLS and no token source configured,
// a verified client certificate is the principal (`mtls:<CN>`, with the roles its subject's O values name,
// or operator and service when it names none). Local mode has no
// authentication: every call is the principal `local` with every role.
// Roles: researcher (submit; get, watch, cancel and list its own jobs), operator (every job), service
// (the calls services make on each other, e.g. the learner's weight stream). Which role a method needs is
// the serving service's access map (`AccessMap`), checked by the gRPC server before the handler runs;
// per-job ownership is checked by the coordinator with `principalOf(call)`.
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';

import * as jose from 'jose';
import type { Logger } from 'pino';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

import {
  ConfigError,
  PermissionDeniedError,
  UnauthenticatedError,
  UnavailableError,
} from '../errors/index.js';

export const ROLES = ['researcher', 'operator', 'service'] as const;
export type Role = (typeof ROLES)[number];

/** How a principal was authenticated. */
export type PrincipalSource = 'tokens-file' | 'jwt' | 'shared-token' | 'mtls' | 'local';

/** An authenticated caller. */
export interface Principal {
  readonly name: string;
  readonly roles: readonly Role[];
  readonly via: PrincipalSource;
}

/** What a principal's name may be (it is stored as a job's owner and used in Redis keys). */
export const PRINCIPAL_NAME_PATTERN = /^[\x21-\x7e]{1,256}$/;

export const LOCAL_PRINCIPAL: Principal = Object.freeze({
  name: 'local',
  roles: Object.freeze([...ROLES]),
  via: 'local',
});

export const SHARED_TOKEN_PRINCIPAL: Principal = Object.freeze({
  name: 'shared-token',
  roles: Object.freeze(['operator', 'service'] as Role[]),
  via: 'shared-token',
});

export function hasRole(principal: Principal, ...roles: readonly Role[]): boolean {
  return roles.some((r) => principal.roles.includes(r));
}

/** Shortest token a tokens file accepts (the shared token has the same floor). */
export const MIN_TOKEN_CHARS = 16;
const MAX_FILE_BYTES = 1024 * 1024;
const MAX_TOKEN_CHARS = 8192;

const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest();

// ---- tokens file --------------------------------------------------------------------------------------

const tokenEntry = z
  .string()
  .max(4096)
  .refine(
    (t) => /^sha256:[0-9a-f]{64}$/.test(t) || (t.length >= MIN_TOKEN_CHARS && !t.startsWith('sha256:')),
    {
      message: `a token of at least ${MIN_TOKEN_CHARS} characters, or sha256:<64 lowercase hex digits> of one`,
    },
  );

const tokensFileSchema = z.strictObject({
  principals: z
    .array(
      z.strictObject({
        name: z.string().regex(PRINCIPAL_NAME_PATTERN, 'printable ASCII without spaces, 1 to 256 characters'),
        roles: z.array(z.enum(ROLES)).min(1).max(3),
        tokens: z.array(tokenEntry).min(1).max(16),
      }),
    )
    .max(10_000),
});

/** The token digests of a tokens file (sha256 hex → principal); throws with every problem. */
export function parseTokensFile(text: string, where: string): Map<string, Principal> {
  let raw: unknown;
  try {
    raw = parseYaml(text); // YAML is a superset of JSON: both forms parse here
  } catch (err) {
    throw new ConfigError('auth', [`${where}: ${err instanceof Error ? err.message : String(err)}`]);
  }
  const parsed = tokensFileSchema.safeParse(raw ?? {});
  if (!parsed.success) {
    throw new ConfigError(
      'auth',
      parsed.error.issues.map((i) => `${where}: ${i.path.map(String).join('.') || '(root)'}: ${i.message}`),
    );
  }
  const out = new Map<string, Principal>();
  const names = new Set<string>();
  const problems: string[] = [];
  for (const p of parsed.data.principals) {
    if (names.has(p.name)) problems.push(`${where}: principal ${p.name} is listed twice`);
    names.add(p.name);
    const principal: Principal = Object.freeze({
      name: p.name,
      roles: Object.freeze([...new Set(p.roles)]),
      via: 'tokens-file',
    });
    for (const t of p.tokens) {
      const digest = t.startsWith('sha256:') ? t.slice(7) : sha256(t).toString('hex');
      const other = out.get(digest);
      if (other) problems.push(`${where}: a token of ${p.name} is also a token of ${other.name}`);
      out.set(digest, principal);
    }
  }
  if (problems.length) throw new ConfigError('auth', problems);
  return out;
}

/**
 * A file parsed at construction (errors thrown: a service does not start on a broken file) and re-read
 * every `intervalMs`; a changed file is parsed again, and a broken one is logged and the last good
 * content kept (a half-written file must not lock everybody out).
 */
export class ReloadingFile<T> {
  private value: T;
  private digest: string;
  private readonly timer: NodeJS.Timeout;
  private reloads = 0;

  constructor(
    readonly path: string,
    private readonly parse: (text: string) => T,
    intervalMs: number,
    private readonly logger?: Logger,
  ) {
    const text = this.read();
    this.value = parse(text);
    this.digest = sha256(text).toString('hex');
    this.timer = setInterval(() => this.check(), intervalMs);
    this.timer.unref();
  }

  get current(): T {
    return this.value;
  }

  /** How many times a changed file was loaded since start. */
  get reloadCount(): number {
    return this.reloads;
  }

  private read(): string {
    let buf: Buffer;
    try {
      buf = readFileSync(this.path);
    } catch (err) {
      throw new ConfigError('auth', [
        `${this.path}: cannot read (${(err as NodeJS.ErrnoException).code ?? String(err)})`,
      ]);
    }
    if (buf.length > MAX_FILE_BYTES) throw new ConfigError('auth', [`${this.path}: larger than 1 MiB`]);
    return buf.toString('utf8');
  }

  /** Re-reads the file now; true when a changed, valid file was loaded. */
  check(): boolean {
    try {
      const text = this.read();
      const digest = sha256(text).toString('hex');
      if (digest === this.digest) return false;
      this.value = this.parse(text);
      this.digest = digest;
      this.reloads++;
      this.logger?.info({ file: this.path }, 'auth file reloaded');
      return true;
    } catch (err) {
      this.logger?.error(
        { file: this.path, err: err instanceof Error ? err.message : String(err) },
        'auth file unreadable or invalid; keeping the previous content',
      );
      return false;
    }
  }

  close(): void {
    clearInterval(this.timer);
  }
}

// ---- JWT ----------------------------------------------------------------------------------------------

export interface JwtSettings {
  /** A JWKS JSON file (re-read when it changes) … */
  readonly jwksFile?: string;
  /** … or its URL (https; http only on a loopback host). */
  readonly jwksUrl?: string;
  readonly issuer: string;
  readonly audience: string;
  /** Claim holding the roles: an array of strings or a space-separated string; dots walk into objects. */
  readonly rolesClaim: string;
  /** Claim naming the principal. */
  readonly nameClaim: string;
  /** Allowed clock skew, in seconds. */
  readonly clockToleranceS?: number;
}

function claimAt(payload: jose.JWTPayload, path: string): unknown {
  let v: unknown = payload;
  for (const part of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string, unknown>)[part];
  }
  return v;
}

/** True when the key set itself could not be had (the identity provider's fault, not the token's). */
function jwksUnavailable(err: unknown): boolean {
  if (err instanceof jose.errors.JWKSTimeout || err instanceof jose.errors.JWKSInvalid) return true;
  if (err instanceof jose.errors.JOSEError) return /JSON Web Key Set HTTP response/.test(err.message);
  // fetch's own failures (connection refused, DNS) are plain errors
  return err instanceof TypeError;
}

function describeJoseError(err: unknown, settings: JwtSettings): string {
  if (err instanceof jose.errors.JWTExpired) return 'JWT expired';
  if (err instanceof jose.errors.JWTClaimValidationFailed) {
    if (err.claim === 'aud') return `JWT audience is not ${settings.audience}`;
    if (err.claim === 'iss') return `JWT issuer is not ${settings.issuer}`;
    if (err.claim === 'nbf') return 'JWT not valid yet (nbf)';
    return `JWT claim ${err.claim} invalid: ${err.reason}`;
  }
  if (err instanceof jose.errors.JWSSignatureVerificationFailed) return 'JWT signature invalid';
  if (err instanceof jose.errors.JWKSNoMatchingKey) return 'JWT signed by a key not in the JWKS';
  if (err instanceof jose.errors.JWKSMultipleMatchingKeys) return 'JWT key id matches several JWKS keys';
  if (err instanceof jose.errors.JOSEAlgNotAllowed) return 'JWT algorithm not allowed';
  if (err instanceof jose.errors.JWSInvalid || err instanceof jose.errors.JWTInvalid) return 'malformed JWT';
  if (err instanceof jose.errors.JOSEError) return `JWT refused (${err.code})`;
  return 'JWT could not be verified';
}

type KeyResolver = (
  header: jose.JWSHeaderParameters,
  token: jose.FlattenedJWSInput,
) => Promise<jose.CryptoKey>;

export class JwtVerifier {
  private readonly file: ReloadingFile<KeyResolver> | null;
  private readonly remote: KeyResolver | null;

  constructor(
    private readonly settings: JwtSettings,
    reloadMs: number,
    private readonly logger?: Logger,
  ) {
    if (settings.jwksFile) {
      const path = settings.jwksFile;
      this.file = new ReloadingFile(
        path,
        (text) => {
          try {
            return jose.createLocalJWKSet(JSON.parse(text) as jose.JSONWebKeySet);
          } catch (err) {
            throw new ConfigError('auth', [`${path}: ${err instanceof Error ? err.message : String(err)}`]);
          }
        },
        reloadMs,
        logger,
      );
      this.remote = null;
    } else if (settings.jwksUrl) {
      this.file = null;
      this.remote = jose.createRemoteJWKSet(new URL(settings.jwksUrl), {
        timeoutDuration: 5_000,
        cooldownDuration: 30_000,
        cacheMaxAge: 10 * 60_000,
      });
    } else {
      throw new ConfigError('auth', ['JWT verification needs authJwksFile or authJwksUrl']);
    }
  }

  get reloadCount(): number {
    return this.file?.reloadCount ?? 0;
  }

  /** The token's principal; UnauthenticatedError saying why it was refused. */
  async verify(token: string): Promise<Principal> {
    const s = this.settings;
    const keys: KeyResolver = (h, t) => (this.file ? this.file.current(h, t) : this.remote!(h, t));
    let payload: jose.JWTPayload;
    try {
      ({ payload } = await jose.jwtVerify(token, keys, {
        issuer: s.issuer,
        audience: s.audience,
        clockTolerance: s.clockToleranceS ?? 30,
        requiredClaims: ['exp'],
      }));
    } catch (err) {
      if (jwksUnavailable(err)) {
        this.logger?.warn({ err: err instanceof Error ? err.message : String(err) }, 'JWKS unavailable');
        throw new UnavailableError('cannot verify JWTs now: the JWKS could not be fetched; retry later');
      }
      throw new UnauthenticatedError(describeJoseError(err, s));
    }
    const name = claimAt(payload, s.nameClaim);
    if (typeof name !== 'string' || !PRINCIPAL_NAME_PATTERN.test(name))
      throw new UnauthenticatedError(
        `JWT claim ${s.nameClaim} must be a string of printable ASCII without spaces (the principal's name)`,
      );
    const raw = claimAt(payload, s.rolesClaim);
    const listed = Array.isArray(raw) ? raw : typeof raw === 'string' ? raw.split(' ') : [];
    const roles = [...new Set(listed.filter((r): r is Role => (ROLES as readonly unknown[]).includes(r)))];
    return Object.freeze({ name, roles: Object.freeze(roles), via: 'jwt' });
  }

  close(): void {
    this.file?.close();
  }
}

// ---- the authenticator --------------------------------------------------------------------------------

export interface AuthenticatorOptions {
  /** The single shared token (back-compat): principal `shared-token`, roles operator and service. */
  readonly sharedToken?: string | null;
  readonly tokensFile?: string | null;
  readonly jwt?: JwtSettings | null;
  /** With no token source: a verified client certificate is the principal (mTLS deployments). */
  readonly mtls?: boolean;
  /** How often the tokens file and JWKS file are checked for changes, in milliseconds. */
  readonly reloadMs?: number;
  readonly logger?: Logger;
}

/** The peer's TLS state, as grpc-js reports it (`call.getAuthContext()`). */
export interface PeerAuth {
  readonly transportSecurityType?: string;
  readonly sslPeerCertificate?: {
    readonly subject?: { readonly CN?: string | string[]; readonly O?: string | string[] };
  };
}

/**
 * The roles of a client certificate: the subject's organisation (O) values that name a role, as Kubernetes
 * reads O as groups (`/CN=alice/O=researcher`); a certificate that names none keeps the roles every
 * certificate of the CA had before (operator and service).
 */
export function certificateRoles(o: string | string[] | undefined): readonly Role[] {
  const listed = (Array.isArray(o) ? o : o === undefined ? [] : [o]).slice(0, 16);
  const roles = ROLES.filter((r) => listed.includes(r));
  return roles.length ? Object.freeze(roles) : SHARED_TOKEN_PRINCIPAL.roles;
}

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

/** Turns a call's bearer token (or client certificate) into a Principal. */
export class Authenticator {
  private readonly shared: Buffer | null;
  private readonly tokens: ReloadingFile<Map<string, Principal>> | null;
  readonly jwt: JwtVerifier | null;
  private readonly mtlsOnly: boolean;

  constructor(options: AuthenticatorOptions) {
    const reloadMs = options.reloadMs ?? 10_000;
    this.shared = options.sharedToken ? sha256(options.sharedToken) : null;
    this.tokens = options.tokensFile
      ? new ReloadingFile(
          options.tokensFile,
          (text) => parseTokensFile(text, options.tokensFile!),
          reloadMs,
          options.logger,
        )
      : null;
    this.jwt = options.jwt ? new JwtVerifier(options.jwt, reloadMs, options.logger) : null;
    this.mtlsOnly = Boolean(options.mtls) && !this.shared && !this.tokens && !this.jwt;
    if (!this.shared && !this.tokens && !this.jwt && !this.mtlsOnly)
      throw new ConfigError('auth', ['no credential source: a shared token, a tokens file, a JWKS or mTLS']);
  }

  /** How many times the tokens file was reloaded since start. */
  get tokensReloadCount(): number {
    return this.tokens?.reloadCount ?? 0;
  }

  /** Re-reads the tokens and JWKS files now (tests; the timer does it every reloadMs). */
  reloadNow(): void {
    this.tokens?.check();
  }

  async authenticate(token: string | null, peer: PeerAuth = {}): Promise<Principal> {
    if (this.mtlsOnly) {
      // no token source: the verified certificate is the credential (a token, if sent, is not looked at)
      if (peer.transportSecurityType === 'ssl' && peer.sslPeerCertificate) {
        const subject = peer.sslPeerCertificate.subject;
        const cn = subject?.CN;
        const first = Array.isArray(cn) ? cn[0] : cn;
        const name = `mtls:${first ?? 'client'}`.replace(/[^\x21-\x7e]/g, '_').slice(0, 256);
        return Object.freeze({ name, roles: certificateRoles(subject?.O), via: 'mtls' });
      }
      throw new UnauthenticatedError('no verified client certificate');
    }
    if (!token) throw new UnauthenticatedError('missing bearer token (send authorization: Bearer <token>)');
    if (token.length > MAX_TOKEN_CHARS) throw new UnauthenticatedError('invalid bearer token: too long');
    if (this.jwt && JWT_SHAPE.test(token)) return this.jwt.verify(token);
    const digest = sha256(token);
    if (this.shared && timingSafeEqual(digest, this.shared)) return SHARED_TOKEN_PRINCIPAL;
    const p = this.tokens?.current.get(digest.toString('hex'));
    if (p) return p;
    throw new UnauthenticatedError(
      this.jwt && !this.tokens && !this.shared
        ? 'invalid bearer token: not a JWT'
        : 'invalid bearer token: not a known token',
    );
  }

  close(): void {
    this.tokens?.close();
    this.jwt?.close();
  }
}

// ---- access -------------------------------------------------------------------------------------------

/**
 * Which roles may call which methods of a service: keys are full method paths
 * (`/spark.v1.JobService/SubmitJob`) or service prefixes (`/spark.v1.PolicyService/`); the longest
 * matching key wins. Methods of a service added without a map need operator or service.
 */
export type AccessMap = Readonly<Record<string, readonly Role[]>>;

export const PRIVILEGED: readonly Role[] = Object.freeze(['operator', 'service'] as Role[]);

/** The roles `path` needs under `maps` (null: every authenticated principal — reflection). */
export function rolesFor(path: string, map: AccessMap): readonly Role[] | null {
  if (path.startsWith('/grpc.reflection.')) return null;
  let best: string | null = null;
  for (const key of Object.keys(map)) {
    if (path.startsWith(key) && (best === null || key.length > best.length)) best = key;
  }
  return best === null ? PRIVILEGED : (map[best] ?? PRIVILEGED);
}

/** PermissionDeniedError unless `principal` holds one of the roles `path` needs. */
export function checkAccess(principal: Principal, path: string, map: AccessMap): void {
  const roles = rolesFor(path, map);
  if (roles === null || hasRole(principal, ...roles)) return;
  const method = path.split('/').filter(Boolean).join('/');
  throw new PermissionDeniedError(
    `permission denied: ${method} needs role ${roles.join(' or ')}; ${principal.name} has ` +
      `${principal.roles.length ? principal.roles.join(', ') : 'no role'}`,
  );
}
