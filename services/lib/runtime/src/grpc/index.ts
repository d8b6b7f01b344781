// gRPC helpers: servers with explicit message limits, grpc.health.v1, server reflection, an auth
// interceptor (bearer token or client certificate → principal, then the roles its method needs; see
// ../auth) and graceful shutdown (NOT_SERVING, drain, then force); clients with a default deadline on every
// call and the token attached; async handler adapters that map errors through toGrpcError.
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { dirname, join } from 'node:path';
import { checkServerIdentity } from 'node:tls';
import { fileURLToPath } from 'node:url';

import * as grpc from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';
import type { Logger } from 'pino';

import {
  Authenticator,
  checkAccess,
  LOCAL_PRINCIPAL,
  ReloadingFile,
  type AccessMap,
  type Principal,
  type Role,
} from '../auth/index.js';
import { ConfigError, toGrpcError, UnauthenticatedError } from '../errors/index.js';

export { grpc };

/** The repository's proto/ directory (the wire contract), used for reflection. */
export const protoRoot = join(dirname(fileURLToPath(import.meta.url)), '../../../../../proto');

/** Method paths that never need a token: Kubernetes probes call health checks anonymously. */
const anonymousPrefixes = ['/grpc.health.v1.Health/'];

/** The principal of each call, keyed by the call's metadata object (the one its handler receives). */
const principals = new WeakMap<grpc.Metadata, Principal>();

/**
 * The authenticated caller of a call (set by the server's auth interceptor before the handler runs).
 * UnauthenticatedError when none was recorded, so a handler never runs on an unknown caller.
 */
export function principalOf(call: { readonly metadata: grpc.Metadata }): Principal {
  const p = principals.get(call.metadata);
  if (!p) throw new UnauthenticatedError('no authenticated principal for this call');
  return p;
}

function bearerOf(metadata: grpc.Metadata): string | null {
  const header = metadata.get('authorization')[0];
  const m = /^Bearer (.+)$/.exec(typeof header === 'string' ? header : '');
  return m?.[1] ?? null;
}

/**
 * Server interceptor: every call not to an anonymous method (health) is authenticated (`authenticator`;
 * null = local mode, every call is the `local` principal) and then checked against `access` (the roles its
 * method needs); a refused call ends with UNAUTHENTICATED or PERMISSION_DENIED before its handler sees it.
 * The principal is available to the handler through `principalOf(call)`.
 */
export function authInterceptor(
  authenticator: Authenticator | null,
  access: () => AccessMap,
  logger?: Logger,
): grpc.ServerInterceptor {
  return (method, call) => {
    if (anonymousPrefixes.some((p) => method.path.startsWith(p)))
      return new grpc.ServerInterceptingCall(call);
    return new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const who = authenticator
              ? authenticator.authenticate(bearerOf(metadata), call.getAuthContext())
              : Promise.resolve(LOCAL_PRINCIPAL);
            who
              .then((principal) => {
                checkAccess(principal, method.path, access());
                principals.set(metadata, principal);
                nextMetadata(metadata);
              })
              .catch((err: unknown) => {
                const mapped = toGrpcError(err);
                if (mapped.code === grpc.status.INTERNAL)
                  logger?.error({ err, path: method.path }, 'authentication failed');
                call.sendStatus({ code: mapped.code, details: mapped.details });
              });
          },
        });
      },
    });
  };
}

/** Server interceptor for the single shared token (back-compat form of `authInterceptor`). */
export function bearerAuthInterceptor(token: string): grpc.ServerInterceptor {
  return authInterceptor(new Authenticator({ sharedToken: token }), () => ({}));
}

/** What a tolerant request decoder returns for bytes that are not a message of the method's type. */
class MalformedRequest {
  constructor(readonly reason: string) {}
}

/** The definition with request decoders that return a MalformedRequest instead of throwing. */
function tolerantDefinition(definition: grpc.ServiceDefinition): grpc.ServiceDefinition {
  const out: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(definition)) {
    const decode = method.requestDeserialize as (bytes: Buffer) => unknown;
    out[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer) => {
        try {
          return decode(bytes);
        } catch (err) {
          return new MalformedRequest(err instanceof Error ? err.message : String(err));
        }
      },
    };
  }
  return out;
}

/** Ends a call whose request (any message of a stream) did not decode, with INVALID_ARGUMENT. */
const malformedRequestInterceptor: grpc.ServerInterceptor = (method, call) =>
  new grpc.ServerInterceptingCall(call, {
    start: (next) => {
      next({
        onReceiveMessage: (message: unknown, nextMessage) => {
          if (message instanceof MalformedRequest)
            call.sendStatus({
              code: grpc.status.INVALID_ARGUMENT,
              details: `malformed request: not a ${method.path} message (${message.reason.slice(0, 200)})`,
            });
          else nextMessage(message);
        },
      });
    },
  });

export interface GrpcServerOptions {
  /** Service name, for logs and health. */
  service: string;
  logger: Logger;
  /**
   * Who may call: an Authenticator (tokens file, JWT, shared token, mTLS). Without one, `authToken` is the
   * single shared token; with neither, auth is off (local mode only: every call is the `local` principal).
   */
  authenticator?: Authenticator | null;
  /** The single shared token (back-compat; ignored when `authenticator` is given). */
  authToken?: string | null;
  /** Largest message received or sent, in bytes. */
  maxMessageBytes: number;
  /** PEM file paths: cert+key for TLS; add ca to require client certificates (mTLS). */
  tls?: { certFile: string; keyFile: string; caFile?: string };
  /** Proto files (relative to protoRoot) whose services reflection should describe. */
  reflectionProtos?: readonly string[];
}

/** A started gRPC server with health, reflection and graceful shutdown. */
export class GrpcServer {
  readonly server: grpc.Server;
  readonly health: HealthImplementation;
  private port = 0;
  private readonly serviceNames: string[] = [];
  private readonly access: Record<string, readonly Role[]> = {};
  readonly authenticator: Authenticator | null;

  constructor(private readonly options: GrpcServerOptions) {
    this.authenticator =
      options.authenticator ??
      (options.authToken ? new Authenticator({ sharedToken: options.authToken }) : null);
    this.server = new grpc.Server({
      'grpc.max_receive_message_length': options.maxMessageBytes,
      'grpc.max_send_message_length': options.maxMessageBytes,
      'grpc.keepalive_time_ms': 30_000,
      'grpc.keepalive_timeout_ms': 10_000,
      'grpc.keepalive_permit_without_calls': 1,
      interceptors: [
        authInterceptor(this.authenticator, () => this.access, options.logger),
        malformedRequestInterceptor,
      ],
    });
    // Every service (health and reflection too) is added with tolerant request decoders: bytes that do not
    // decode end the call with INVALID_ARGUMENT (grpc-js itself would answer INTERNAL).
    const tolerant = {
      addService: (d: grpc.ServiceDefinition, i: grpc.UntypedServiceImplementation) =>
        this.server.addService(tolerantDefinition(d), i),
    } as unknown as grpc.Server;
    this.health = new HealthImplementation({ '': 'NOT_SERVING' });
    this.health.addToServer(tolerant);
    const protos = [...(options.reflectionProtos ?? []), healthProtoPath];
    const pkg: PackageDefinition = loadSync(protos, {
      includeDirs: [protoRoot, dirname(healthProtoPath)],
      keepCase: true,
      longs: String,
      enums: String,
      defaults: true,
    });
    new ReflectionService(pkg).addToServer(tolerant);
  }

  /**
   * Adds a service implementation; its fully-qualified name is reported by health. `access` says which
   * roles may call its methods (without it: operator or service).
   */
  addService(
    definition: grpc.ServiceDefinition,
    implementation: grpc.UntypedServiceImplementation,
    name?: string,
    access?: AccessMap,
  ): void {
    this.server.addService(tolerantDefinition(definition), implementation);
    Object.assign(this.access, access ?? {});
    if (name) this.serviceNames.push(name);
  }

  /** Binds and starts serving; returns the bound port. */
  async listen(host: string, port: number): Promise<number> {
    const creds = this.serverCredentials();
    this.port = await new Promise<number>((resolve, reject) =>
      this.server.bindAsync(`${host.includes(':') ? `[${host}]` : host}:${port}`, creds, (err, bound) =>
        err ? reject(err) : resolve(bound),
      ),
    );
    this.health.setStatus('', 'SERVING');
    for (const n of this.serviceNames) this.health.setStatus(n, 'SERVING');
    this.options.logger.info({ port: this.port, auth: Boolean(this.authenticator) }, 'gRPC server listening');
    return this.port;
  }

  get boundPort(): number {
    return this.port;
  }

  private serverCredentials(): grpc.ServerCredentials {
    const tls = this.options.tls;
    if (!tls) return grpc.ServerCredentials.createInsecure();
    return grpc.ServerCredentials.createSsl(
      tls.caFile ? readFileSync(tls.caFile) : null,
      [{ cert_chain: readFileSync(tls.certFile), private_key: readFileSync(tls.keyFile) }],
      Boolean(tls.caFile),
    );
  }

  /** Health goes NOT_SERVING, in-flight calls drain for up to `graceMs`, then remaining calls are cut. */
  async shutdown(graceMs: number): Promise<void> {
    this.authenticator?.close();
    this.health.setStatus('', 'NOT_SERVING');
    for (const n of this.serviceNames) this.health.setStatus(n, 'NOT_SERVING');
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.options.logger.warn('gRPC drain timed out; forcing shutdown');
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      timer.unref();
      this.server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** Adapts an async function to a unary handler; thrown errors become gRPC statuses (no stacks). */
export function unaryHandler<Req, Res>(
  logger: Logger,
  fn: (request: Req, call: grpc.ServerUnaryCall<Req, Res>) => Promise<Res>,
): grpc.handleUnaryCall<Req, Res> {
  return (call, callback) => {
    void answer(logger, call, callback, fn(call.request, call));
  };
}

/** Sends a handler's result, or its error as a gRPC status (an INTERNAL one logged with the method). */
function answer<Res>(
  logger: Logger,
  call: { getPath(): string },
  callback: grpc.sendUnaryData<Res>,
  result: Promise<Res>,
): Promise<void> {
  return result.then(
    (res) => callback(null, res),
    (err: unknown) => {
      const mapped = toGrpcError(err);
      if (mapped.code === grpc.status.INTERNAL) logger.error({ err, path: call.getPath() }, 'handler failed');
      callback(mapped);
    },
  );
}

/** Adapts an async function to a client-streaming handler (it reads `call`, e.g. with `for await`). */
export function clientStreamHandler<Req, Res>(
  logger: Logger,
  fn: (call: grpc.ServerReadableStream<Req, Res>) => Promise<Res>,
): grpc.handleClientStreamingCall<Req, Res> {
  return (call, callback) => {
    void answer(logger, call, callback, fn(call));
  };
}

/** Adapts an async function to a server-streaming handler; it writes through `call.write`. */
export function serverStreamHandler<Req, Res>(
  logger: Logger,
  fn: (request: Req, call: grpc.ServerWritableStream<Req, Res>) => Promise<void>,
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    fn(call.request, call).then(
      () => call.end(),
      (err: unknown) => {
        const mapped = toGrpcError(err);
        if (mapped.code === grpc.status.INTERNAL)
          logger.error({ err, path: call.getPath() }, 'stream failed');
        // grpc-js sends a stream's status from an 'error' event; destroy() would leave the client waiting.
        call.emit('error', Object.assign(new Error(mapped.details), mapped));
      },
    );
  };
}

/** A bearer token, none (null), or a function read on every call (a token file that is re-read). */
export type TokenSource = string | null | (() => string | null);

export interface ClientOptions {
  /** Bearer token to attach, or null. */
  token: TokenSource;
  /** Deadline applied to every call that does not set its own, in milliseconds. */
  defaultDeadlineMs: number;
  maxMessageBytes?: number;
  /** PEM file paths for TLS; with cert+key the client presents a certificate (mTLS). */
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

/**
 * A client's TLS settings from a service's `tls*` config keys (the same PEM files its server uses: the CA
 * verifies the peer, the cert+key are presented for mTLS); undefined when TLS is off. Every internal client
 * (e.g. the rollout worker's weight fetch) uses this, so switching TLS on never leaves a plaintext channel.
 */
export function clientTlsFrom(config: {
  readonly tlsCaFile: string;
  readonly tlsCertFile: string;
  readonly tlsKeyFile: string;
}): ClientOptions['tls'] {
  const { tlsCaFile, tlsCertFile, tlsKeyFile } = config;
  if (!tlsCaFile && !tlsCertFile && !tlsKeyFile) return undefined;
  return {
    ...(tlsCaFile ? { caFile: tlsCaFile } : {}),
    ...(tlsCertFile && tlsKeyFile ? { certFile: tlsCertFile, keyFile: tlsKeyFile } : {}),
  };
}

/** Most characters of a token read from a file. */
const MAX_TOKEN_FILE_CHARS = 8192;

function parseTokenFile(text: string, path: string): string {
  const t = text.trim();
  if (!t || t.length > MAX_TOKEN_FILE_CHARS || /\s/.test(t))
    throw new ConfigError('auth', [
      `${path}: a token file holds one token (non-empty, no spaces, at most ${MAX_TOKEN_FILE_CHARS} chars)`,
    ]);
  return t;
}

/**
 * The token a service presents when it calls another service (e.g. the rollout worker's weight fetch):
 * the token in `authServiceTokenFile` (re-read every `authReloadMs`, so a rotated Kubernetes Secret takes
 * effect without a restart; an unreadable or invalid new content is logged and the last good token kept),
 * else `authServiceToken`, else the shared `authToken`; null in local mode or when none is set. A token file
 * that cannot be read at start is a ConfigError.
 */
export function serviceTokenFrom(
  config: {
    readonly localMode: boolean;
    readonly authToken: string;
    readonly authServiceToken: string;
    readonly authServiceTokenFile?: string;
    readonly authReloadMs?: number;
  },
  logger?: Logger,
): TokenSource {
  if (config.localMode) return null;
  const path = config.authServiceTokenFile;
  if (path) {
    const file = new ReloadingFile(
      path,
      (text) => parseTokenFile(text, path),
      config.authReloadMs ?? 10_000,
      logger,
    );
    return () => file.current;
  }
  return config.authServiceToken || config.authToken || null;
}

/** Client interceptor: attaches the token and a default deadline to every call. */
export function clientInterceptor(options: ClientOptions): grpc.Interceptor {
  return (callOptions, nextCall) => {
    const withDeadline =
      callOptions.deadline === undefined
        ? { ...callOptions, deadline: Date.now() + options.defaultDeadlineMs }
        : callOptions;
    return new grpc.InterceptingCall(nextCall(withDeadline), {
      start: (metadata, listener, next) => {
        const token = typeof options.token === 'function' ? options.token() : options.token;
        if (token) metadata.set('authorization', `Bearer ${token}`);
        next(metadata, listener);
      },
    });
  };
}

/** The host of a gRPC target (`host:port`, `[v6]:port`, `dns:///host:port`) when it is an IP literal. */
export function ipLiteralHost(address: string): string | null {
  const target = address.replace(/^[a-z][a-z0-9+.-]*:(\/\/[^/]*\/)?/i, '');
  const host = target.startsWith('[') ? target.slice(1, target.indexOf(']')) : target.replace(/:\d+$/, '');
  return isIP(host) === 0 ? null : host;
}

/**
 * SNI sent when a TLS target is an IP address: grpc-js sends the target host as the TLS server name,
 * which Node refuses for an IP literal (RFC 6066; an error since Node 26), so such a channel overrides it
 * with this name and still checks the server's certificate against the IP address itself.
 */
const IP_TARGET_SERVERNAME = 'localhost';

/**
 * Channel credentials and options for a client built with `new SomeClient(address, creds, options)`.
 * Pass the `address` the client will dial: with TLS to an IP address the channel needs it (see above).
 */
export function clientSetup(
  options: ClientOptions,
  address?: string,
): {
  credentials: grpc.ChannelCredentials;
  options: grpc.ClientOptions;
} {
  const tls = options.tls;
  const ip = tls && address !== undefined ? ipLiteralHost(address) : null;
  const credentials = tls
    ? grpc.credentials.createSsl(
        tls.caFile ? readFileSync(tls.caFile) : null,
        tls.keyFile ? readFileSync(tls.keyFile) : null,
        tls.certFile ? readFileSync(tls.certFile) : null,
        ip === null ? {} : { checkServerIdentity: (_name, cert) => checkServerIdentity(ip, cert) },
      )
    : grpc.credentials.createInsecure();
  const max = options.maxMessageBytes ?? 64 * 1024 * 1024;
  return {
    credentials,
    options: {
      interceptors: [clientInterceptor(options)],
      'grpc.max_receive_message_length': max,
      'grpc.max_send_message_length': max,
      'grpc.keepalive_time_ms': 30_000,
      ...(ip === null ? {} : { 'grpc.ssl_target_name_override': IP_TARGET_SERVERNAME }),
    },
  };
}

type HealthCheckResponse = { status: string };
type HealthClient = grpc.Client & {
  check(
    req: { service: string },
    callback: (err: grpc.ServiceError | null, res?: HealthCheckResponse) => void,
  ): grpc.ClientUnaryCall;
};

/** Calls grpc.health.v1.Health/Check at `address`; resolves to "SERVING", "NOT_SERVING", …. */
export async function checkHealth(
  address: string,
  options: ClientOptions & { service?: string },
): Promise<string> {
  const pkg = grpc.loadPackageDefinition(
    loadSync(healthProtoPath, { keepCase: true, enums: String }),
  ) as unknown as {
    grpc: {
      health: {
        v1: { Health: new (a: string, c: grpc.ChannelCredentials, o: grpc.ClientOptions) => HealthClient };
      };
    };
  };
  const setup = clientSetup(options, address);
  const client = new pkg.grpc.health.v1.Health(address, setup.credentials, setup.options);
  try {
    return await new Promise<string>((resolve, reject) =>
      client.check({ service: options.service ?? '' }, (err, res) =>
        err ? reject(err) : resolve(res?.status ?? 'UNKNOWN'),
      ),
    );
  } finally {
    client.close();
  }
}

/** Promise form of a callback-style unary client method (as ts-proto's grpc-js clients generate). */
export function callUnary<Req, Res>(
  method: (
    req: Req,
    metadata: grpc.Metadata,
    options: Partial<grpc.CallOptions>,
    callback: (err: grpc.ServiceError | null, res: Res) => void,
  ) => grpc.ClientUnaryCall,
  request: Req,
  options: { deadlineMs?: number } = {},
): Promise<Res> {
  const callOptions: Partial<grpc.CallOptions> =
    options.deadlineMs !== undefined ? { deadline: Date.now() + options.deadlineMs } : {};
  return new Promise<Res>((resolve, reject) => {
    method(request, new grpc.Metadata(), callOptions, (err, res) => (err ? reject(err) : resolve(res)));
  });
}
