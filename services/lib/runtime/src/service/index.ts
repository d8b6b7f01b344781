// The worker-service skeleton every Spark service runs on. `startWorkerService(definition, config, deps)`
// does, in this order: the gRPC security check (services with a gRPC server), the logger, the Lifecycle,
// the ServiceMetrics, Redis (the configured URL or a private redis-server) with a bounded wait until it
// answers, the service's own wiring (`wire(ctx)`: its domain objects, its gRPC implementations and its
// processors), the gRPC server (health, reflection, auth — principals and per-method roles —, TLS/mTLS
// from the shared config keys), the `/metrics` + `/healthz` server, and finally each processor's
// `start()`. Every step registers its closer on the Lifecycle, so `close()` (or SIGTERM) undoes it in
// reverse: processors stop taking work, then the servers stop, then the service's objects are freed, then
// Redis disconnects.
// `runServiceMain` is a service's process entry: config loaded once from defaults, file and SPARK_*
// environment; signal handlers and the launcher-death watch; one `READY {json}` line on stdout.
import type { z } from 'zod';

import { UnavailableError } from '../errors/index.js';
import {
  assertServerSecurity,
  baseServiceShape,
  loadConfigOrExit,
  type ConfigOf,
  type LoadConfigOptions,
} from '../config/index.js';
import { Authenticator, type AccessMap } from '../auth/index.js';
import { GrpcServer, type grpc, type GrpcServerOptions } from '../grpc/index.js';
import { Lifecycle } from '../lifecycle/index.js';
import { createLogger, type Logger } from '../logging/index.js';
import { ServiceMetrics, startMetricsServer } from '../metrics/index.js';
import { connectRedis, redactRedisUrl, resolveRedis, type Redis } from '../redis/index.js';

export { baseServiceShape };

/** The config keys every service shares (logging, ports, Redis, auth, TLS, limits, shutdown grace). */
export type BaseServiceConfig = ConfigOf<typeof baseServiceShape>;

/** Resolves once an ioredis client is ready (clients here have no offline queue), bounded in time. */
export async function whenRedisReady(redis: Redis, timeoutMs = 10_000): Promise<void> {
  if (redis.status === 'ready') return;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new UnavailableError(`Redis did not become ready within ${timeoutMs} ms`));
    }, timeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', onReady);
  });
}

/** The Authenticator of a service's config (shared token, tokens file, JWKS, mTLS); null in local mode. */
export function authenticatorFrom(config: BaseServiceConfig, logger?: Logger): Authenticator | null {
  if (config.localMode) return null;
  const jwks = config.authJwksFile || config.authJwksUrl;
  return new Authenticator({
    sharedToken: config.authToken || null,
    tokensFile: config.authTokensFile || null,
    jwt: jwks
      ? {
          ...(config.authJwksFile ? { jwksFile: config.authJwksFile } : { jwksUrl: config.authJwksUrl }),
          issuer: config.authJwtIssuer,
          audience: config.authJwtAudience,
          rolesClaim: config.authJwtRolesClaim,
          nameClaim: config.authJwtNameClaim,
        }
      : null,
    mtls: Boolean(config.tlsCaFile && config.tlsCertFile && config.tlsKeyFile),
    reloadMs: config.authReloadMs,
    ...(logger ? { logger } : {}),
  });
}

/** The gRPC server options of a service: limits, auth (off in local mode) and TLS/mTLS files. */
export function grpcServerOptions(
  service: string,
  config: BaseServiceConfig,
  logger: Logger,
  reflectionProtos: readonly string[],
): GrpcServerOptions {
  return {
    service,
    logger,
    authenticator: authenticatorFrom(config, logger),
    maxMessageBytes: config.grpcMaxMessageBytes,
    ...(config.tlsCertFile && config.tlsKeyFile
      ? {
          tls: {
            certFile: config.tlsCertFile,
            keyFile: config.tlsKeyFile,
            ...(config.tlsCaFile ? { caFile: config.tlsCaFile } : {}),
          },
        }
      : {}),
    reflectionProtos,
  };
}

/** A piece of work the skeleton starts once the servers listen and stops first on shutdown. */
export interface Processor {
  start(): Promise<void>;
  close(): Promise<void>;
}

/** What a service's wiring sees: everything the skeleton set up. */
export interface ServiceContext<C extends BaseServiceConfig> {
  readonly name: string;
  readonly config: C;
  readonly logger: Logger;
  readonly metrics: ServiceMetrics;
  readonly lifecycle: Lifecycle;
  /** A ready, fail-fast client (no offline queue); the skeleton disconnects it last. */
  readonly redis: Redis;
  /** The Redis URL in use (a private server's when none was configured). */
  readonly redisUrl: string;
  /** The gRPC port once the server listens (0 before, and for services without gRPC). */
  readonly grpcPort: () => number;
}

/** One gRPC service implementation to serve. */
export interface GrpcServiceSpec {
  readonly definition: grpc.ServiceDefinition;
  readonly implementation: grpc.UntypedServiceImplementation;
  /** Fully-qualified name, reported by health (`spark.v1.PolicyService`). */
  readonly name: string;
  /** Which roles may call which of its methods (see @spark/runtime/auth). */
  readonly access: AccessMap;
}

/** What a service's wiring returns to the skeleton. */
export interface ServiceWiring<Extra> {
  /** gRPC services (only for definitions with `grpc`). */
  readonly grpcServices?: readonly GrpcServiceSpec[];
  /** Started in order after the servers listen; each registered on the Lifecycle as `name`. */
  readonly processors?: readonly (readonly [name: string, processor: Processor])[];
  /** Service-specific fields of the handle, computed once everything started. */
  readonly extra: () => Extra;
  /** Service-specific fields of the READY line (e.g. the learner's advertised address). */
  readonly ready?: () => Record<string, unknown>;
}

export interface ServiceDefinition<C extends BaseServiceConfig, Extra> {
  /** Service name: logs, metric prefix, READY line. */
  readonly name: string;
  /** A gRPC server with these reflection protos (relative to proto/); absent: no gRPC server. */
  readonly grpc?: { readonly reflectionProtos: readonly string[] };
  /**
   * Without redisUrl, start a private redis-server only in local mode (the coordinator); by default any
   * service without redisUrl starts its own.
   */
  readonly privateRedisInLocalModeOnly?: boolean;
  /** The process registry, when the service builds its own (default: `new ServiceMetrics(name)`). */
  readonly metrics?: ServiceMetrics;
  /** The service's own parts, wired into the skeleton. Register closers on `ctx.lifecycle`. */
  readonly wire: (ctx: ServiceContext<C>) => Promise<ServiceWiring<Extra>>;
}

export interface ServiceDeps {
  logger?: Logger;
}

/** A started service; `Extra` holds the service's own fields. */
export type WorkerService<Extra> = Extra & {
  readonly name: string;
  readonly logger: Logger;
  readonly lifecycle: Lifecycle;
  /** The skeleton's per-process registry (`/metrics`). */
  readonly serviceMetrics: ServiceMetrics;
  readonly metricsPort: number;
  /** 0 for services without gRPC. */
  readonly grpcPort: number;
  /** The Redis URL in use. */
  readonly redisUrl: string;
  /** The JSON object of the READY line. */
  readyInfo(): Record<string, unknown>;
  close(): Promise<void>;
};

/** Starts a service on the skeleton (see the file comment for the order). */
export async function startWorkerService<C extends BaseServiceConfig, Extra extends object>(
  definition: ServiceDefinition<C, Extra>,
  config: C,
  deps: ServiceDeps = {},
): Promise<WorkerService<Extra>> {
  const { name } = definition;
  if (definition.grpc) assertServerSecurity(config);
  const logger = deps.logger ?? createLogger({ service: name, level: config.logLevel });
  const lifecycle = new Lifecycle(logger, config.shutdownGraceMs);
  const metrics = definition.metrics ?? new ServiceMetrics(name);
  try {
    if (!config.redisUrl && definition.privateRedisInLocalModeOnly && !config.localMode)
      throw new Error('redisUrl (REDIS_URL) is required outside local mode');
    const redisLoc = await resolveRedis(config.redisUrl || undefined);
    lifecycle.add('redis-server', () => redisLoc.stop());
    const redis = connectRedis(redisLoc.url);
    lifecycle.add('redis', async () => {
      await redis.quit().catch(() => redis.disconnect());
    });
    await whenRedisReady(redis);
    logger.info({ redis: redactRedisUrl(redisLoc.url), prefix: config.redisPrefix }, 'connected to Redis');

    let grpcPort = 0;
    const ctx: ServiceContext<C> = {
      name,
      config,
      logger,
      metrics,
      lifecycle,
      redis,
      redisUrl: redisLoc.url,
      grpcPort: () => grpcPort,
    };
    const wiring = await definition.wire(ctx);

    if (definition.grpc) {
      const server = new GrpcServer(
        grpcServerOptions(name, config, logger, definition.grpc.reflectionProtos),
      );
      for (const s of wiring.grpcServices ?? [])
        server.addService(s.definition, s.implementation, s.name, s.access);
      grpcPort = await server.listen(config.grpcHost, config.grpcPort);
      lifecycle.add('grpc', () => server.shutdown(config.shutdownGraceMs));
    }
    const metricsServer = await startMetricsServer(metrics.registry, {
      host: config.metricsHost,
      port: config.metricsPort,
      healthy: () => !lifecycle.isShuttingDown,
    });
    lifecycle.add('metrics', () => metricsServer.close());

    for (const [processorName, processor] of wiring.processors ?? []) {
      await processor.start();
      lifecycle.add(processorName, () => processor.close());
    }

    const readyInfo = () => ({
      service: name,
      ...(definition.grpc ? { grpcPort } : {}),
      metricsPort: metricsServer.port,
      ...(wiring.ready?.() ?? {}),
    });
    logger.info(readyInfo(), `${name} ready`);
    const base = {
      name,
      logger,
      lifecycle,
      serviceMetrics: metrics,
      metricsPort: metricsServer.port,
      grpcPort,
      redisUrl: redisLoc.url,
      readyInfo,
      close: () => lifecycle.shutdown('close'),
    };
    // the service's fields may be getters (a value fixed after start): keep their descriptors
    return Object.defineProperties(
      base,
      Object.getOwnPropertyDescriptors(wiring.extra()),
    ) as WorkerService<Extra>;
  } catch (err) {
    await lifecycle.shutdown('start failed');
    throw err;
  }
}

/**
 * A service's process entry: loads its config once, starts it, installs the signal handlers and the
 * launcher-death watch, and prints one `READY {json}` line (the launcher parses it). A failed start is
 * reported on stderr with exit status 1; an invalid config exits with status 2.
 */
export async function runServiceMain<Shape extends z.ZodRawShape, Extra>(
  name: string,
  shape: Shape,
  start: (config: ConfigOf<Shape>) => Promise<WorkerService<Extra>>,
  options: LoadConfigOptions = {},
): Promise<void> {
  const config = loadConfigOrExit(name, shape, options);
  let service: WorkerService<Extra>;
  try {
    service = await start(config);
  } catch (err) {
    process.stderr.write(`${name} failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  service.lifecycle.installSignalHandlers();
  process.stdout.write(`READY ${JSON.stringify(service.readyInfo())}\n`);
}
