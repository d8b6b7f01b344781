// Redis and BullMQ: connect to REDIS_URL or start a private redis-server on a free loopback port (tests
// and local mode), and build queues and workers with the production settings BullMQ documents: producers
// fail fast (no offline queue), workers retry forever (maxRetriesPerRequest: null), completed and failed
// jobs are kept in bounded numbers, queue depth is bounded at enqueue time.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

import {
  Queue,
  QueueEvents,
  Worker,
  type JobsOptions,
  type Processor,
  type QueueOptions,
  type WorkerOptions,
} from 'bullmq';
import { Redis, type RedisOptions } from 'ioredis';

import { InvalidArgumentError, ResourceExhaustedError, UnavailableError } from '../errors/index.js';

export { Redis } from 'ioredis';
export { UnrecoverableError, type Job } from 'bullmq';

/** A running private redis-server. */
export interface PrivateRedis {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
  /**
   * Lets this process exit while the server runs (it is still killed on exit, and by the kernel through
   * setpriv when available): for a server shared by a whole test file, whose last test has no hook to stop it.
   */
  unref(): void;
}

/** A free TCP port on 127.0.0.1 (bound then released; the caller binds it right away). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** True when a Redis server answers PING at `url` within `timeoutMs`. */
export async function redisAnswers(url: string, timeoutMs = 1_000): Promise<boolean> {
  const client = new Redis(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
  });
  client.on('error', () => undefined);
  try {
    await client.connect();
    return (await client.ping()) === 'PONG';
  } catch {
    return false;
  } finally {
    client.disconnect();
  }
}

/** The absolute path of an executable found on PATH (or the path itself when it has a slash), else null. */
function onPath(name: string): string | null {
  const candidates = name.includes('/')
    ? [name]
    : (process.env.PATH ?? '').split(delimiter).map((d) => join(d, name));
  for (const c of candidates) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // not here
    }
  }
  return null;
}

const installHint =
  'redis-server was not found on PATH. Install it (Debian/Ubuntu: `apt-get install -y redis-server`; ' +
  'macOS: `brew install redis`) or point REDIS_URL at a running Redis.';

/**
 * Starts `redis-server` on a free loopback port with persistence off and `noeviction`, in a temporary
 * directory that is removed on stop. The server is killed when this process exits.
 */
export async function startPrivateRedis(
  options: { binary?: string; startTimeoutMs?: number } = {},
): Promise<PrivateRedis> {
  const binary = options.binary ?? 'redis-server';
  const dir = mkdtempSync(join(tmpdir(), 'spark-redis-'));
  const port = await freePort();
  const args = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--maxmemory-policy',
    'noeviction',
    '--protected-mode',
    'yes',
  ];
  // With util-linux's setpriv, the kernel SIGKILLs the server when this process dies by any means (a
  // SIGKILLed launcher runs no exit handler); setpriv execs redis-server in place (same pid). Only used when
  // both are on PATH, so a missing redis-server still gets the install hint below.
  const setpriv = onPath(binary) ? onPath('setpriv') : null;
  const child: ChildProcess = setpriv
    ? spawn(setpriv, ['--pdeathsig', 'KILL', '--', binary, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const spawnError = new Promise<never>((_, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'ENOENT' ? new UnavailableError(installHint) : err),
    );
    child.once('exit', (code) =>
      reject(new UnavailableError(`redis-server exited early with status ${code}`)),
    );
  });
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + (options.startTimeoutMs ?? 10_000);
  let abandoned = false;
  const ready = (async () => {
    while (Date.now() < deadline && !abandoned) {
      if (await redisAnswers(url, 500)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new UnavailableError(`redis-server on port ${port} did not answer within the start timeout`);
  })();
  try {
    await Promise.race([ready, spawnError]);
  } catch (err) {
    abandoned = true;
    ready.catch(() => undefined);
    child.kill('SIGKILL');
    process.removeListener('exit', killOnExit);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  spawnError.catch(() => undefined);
  let stopped: Promise<void> | null = null;
  return {
    url,
    port,
    unref: () => {
      child.unref();
      (child.stderr as { unref?: () => void } | null)?.unref?.();
    },
    stop: () =>
      (stopped ??= new Promise<void>((resolve) => {
        process.removeListener('exit', killOnExit);
        const done = () => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        };
        if (child.exitCode !== null || child.signalCode !== null) return done();
        const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
        child.once('exit', () => {
          clearTimeout(timer);
          done();
        });
        child.kill('SIGTERM');
      })),
  };
}

/** Where Redis is: the configured URL, or a private server this process started (then `stop` it). */
export async function resolveRedis(
  url: string | undefined,
): Promise<{ url: string; stop: () => Promise<void> }> {
  if (url) return { url, stop: async () => undefined };
  const priv = await startPrivateRedis();
  return { url: priv.url, stop: () => priv.stop() };
}

/** A unique key prefix, so tests and runs sharing one Redis never collide. */
export function uniquePrefix(tag = 'spark'): string {
  return `${tag}-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/** Redacts the password of a Redis URL for logs. */
export function redactRedisUrl(url: string): string {
  return url.replace(/\/\/([^:@/]*):([^@/]*)@/, '//$1:***@');
}

/** ioredis options from a redis:// or rediss:// URL (user, password, db, TLS). */
export function redisOptionsFromUrl(url: string): RedisOptions {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InvalidArgumentError(`invalid Redis URL "${redactRedisUrl(url)}"`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new InvalidArgumentError(`Redis URL must start with redis:// or rediss:// (got ${u.protocol})`);
  }
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : 0;
  if (!Number.isInteger(db) || db < 0)
    throw new InvalidArgumentError(`invalid Redis database in URL: ${u.pathname}`);
  return {
    host: u.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    db,
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** Options for producers (Queue, job state): fail fast rather than buffer commands while Redis is down. */
export function producerOptions(url: string): RedisOptions {
  return {
    ...redisOptionsFromUrl(url),
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 5_000,
  };
}

/** Options for workers: blocking commands retry forever (BullMQ requires maxRetriesPerRequest: null). */
export function workerOptions(url: string): RedisOptions {
  return { ...redisOptionsFromUrl(url), maxRetriesPerRequest: null, connectTimeout: 5_000 };
}

/** A plain client for job state with producer semantics; the caller disconnects it. */
export function connectRedis(url: string): Redis {
  const c = new Redis(producerOptions(url));
  c.on('error', () => undefined); // surfaced on the command that fails
  return c;
}

/** How long a completed task stays listed in its queue, in seconds (at most the last 10,000 of a queue). */
export const COMPLETED_KEPT_S = 3_600;

/** Default job options: bounded retries with backoff, bounded history of completed and failed jobs. */
export const defaultJobOptions: JobsOptions = {
  attempts: 5,
  backoff: { type: 'exponential', delay: 500 },
  removeOnComplete: { age: COMPLETED_KEPT_S, count: 10_000 },
  removeOnFail: { age: 24 * 3_600, count: 10_000 },
};

export interface QueueFactoryOptions {
  url: string;
  prefix: string;
}

/** A producer-side queue; call `await queue.waitUntilReady()` before the first add. */
export function createQueue<T>(name: string, options: QueueFactoryOptions & Partial<QueueOptions>): Queue<T> {
  const { url, prefix, ...rest } = options;
  return new Queue<T>(name, {
    connection: producerOptions(url),
    prefix,
    defaultJobOptions,
    ...rest,
  });
}

/** A worker with a dedicated blocking connection; `close()` waits for the active jobs to finish. */
export function createWorker<T, R>(
  name: string,
  processor: Processor<T, R>,
  options: QueueFactoryOptions & Partial<WorkerOptions>,
): Worker<T, R> {
  const { url, prefix, ...rest } = options;
  const lockDuration = rest.lockDuration ?? 60_000;
  return new Worker<T, R>(name, processor, {
    connection: workerOptions(url),
    prefix,
    concurrency: 1,
    lockDuration,
    // a lock shorter than BullMQ's 30 s stalled check gets a check as often as its lock, so a dead worker's
    // task comes back after about lock + 2 × lock, not lock + 60 s (docs/operations.md, task locks)
    stalledInterval: Math.min(30_000, lockDuration),
    maxStalledCount: 3,
    ...rest,
  });
}

/**
 * Queue events (completed/failed) for waiting on results, on a dedicated blocking connection. They are
 * read from `lastEventId` on (the id of the last event already seen; default: from the moment the
 * connection's first read runs, so events of the first few milliseconds may be missed).
 */
export function createQueueEvents(
  name: string,
  options: QueueFactoryOptions & { lastEventId?: string },
): QueueEvents {
  return new QueueEvents(name, {
    connection: workerOptions(options.url),
    prefix: options.prefix,
    ...(options.lastEventId ? { lastEventId: options.lastEventId } : {}),
  });
}

/**
 * Adds a job unless the queue already holds `maxDepth` waiting/delayed jobs (ResourceExhaustedError).
 * With a deterministic `jobId`, re-adding the same job is a no-op (BullMQ deduplicates by id).
 */
export async function enqueueBounded<T>(
  queue: Queue<T>,
  name: string,
  data: T,
  options: { jobId: string; maxDepth: number } & JobsOptions,
): Promise<void> {
  const depth = await queue.getJobCountByTypes('waiting', 'delayed', 'prioritized', 'paused');
  if (depth >= options.maxDepth) {
    throw new ResourceExhaustedError(
      `queue ${queue.name} is full (${depth} ≥ ${options.maxDepth} jobs waiting)`,
    );
  }
  const { maxDepth: _maxDepth, ...jobOptions } = options;
  // BullMQ's generic name typing is over-narrow for a generic T; the name is a plain string at run time.
  await (queue as unknown as Queue).add(name, data, jobOptions);
}
