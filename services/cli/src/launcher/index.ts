// The local launcher behind `spark up`, `spark demo` and the end-to-end tests: a whole Spark cluster on
// this machine — a private redis-server (unless a Redis URL is given) and every service as its own child
// process (`node --import tsx services/<name>/src/main.ts`), wired through SPARK_* environment variables
// (local mode, one shared Redis prefix, the learner's address once it is READY). Each child's stdout and
// stderr go to `<dataDir>/logs/<name>.log`; the launcher waits (bounded) for each child's one
// `READY {json}` line. `stop()` sends SIGTERM to every child, waits (bounded), SIGKILLs what is left and
// stops the private Redis. A child that dies unexpectedly settles `failure` and, by default, stops the rest.
import { spawn, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  createWriteStream,
  existsSync,
  mkdirSync,
  openSync,
  readSync,
  statSync,
  type WriteStream,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { redactRedisUrl, redisAnswers, startPrivateRedis, type PrivateRedis } from '@spark/runtime/redis';

/** The repository root (services/cli/src/launcher → four levels up). */
export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../../..');

/** The services a local cluster runs, in start order after the learner. */
export type ServiceName = 'learner' | 'coordinator' | 'verifier' | 'reward-synthesis' | 'rollout';

/** What a service announces on its READY line (ports inside; other fields kept as given). */
export interface ReadyInfo {
  service?: string;
  grpcPort?: number;
  metricsPort?: number;
  [key: string]: unknown;
}

export interface LocalClusterOptions {
  /** Directory for logs (and the services' data: checkpoints). Created when missing. */
  dataDir: string;
  /** An existing Redis to use; empty/undefined starts a private redis-server. */
  redisUrl?: string;
  /** Redis key / BullMQ prefix shared by every service (default "spark"). */
  prefix?: string;
  /** Rollout worker processes (default 1, at most 16). */
  rolloutWorkers?: number;
  /**
   * Ranks of the learner group (default 1, at most 16): rank 0 is the `learner` child, ranks 1… are
   * `learner-rank-<n>` children (followers), all on 127.0.0.1.
   */
  learnerRanks?: number;
  /** Verifier worker processes (default 1, at most 16). */
  verifierWorkers?: number;
  /** The coordinator's JobService port (default 0 = a free one). */
  coordinatorPort?: number;
  /** How long each child may take to print READY (default 90 s; services load the native addon). */
  readyTimeoutMs?: number;
  /** How long stop() waits after SIGTERM before SIGKILL (default 15 s). */
  stopTimeoutMs?: number;
  /** Extra environment for every child (e.g. SPARK_LOG_LEVEL). */
  env?: Record<string, string>;
  /** Stop every other child when one dies unexpectedly (default true). */
  stopOnFailure?: boolean;
  /** Progress lines for a person ("learner ready on …"); default: none. */
  log?: (line: string) => void;
  /**
   * Which services to run (default: all five). A partial cluster is for tests and debugging: without the
   * coordinator `coordinatorAddress` is empty; without the learner `learnerAddress` is empty.
   */
  services?: readonly ServiceName[];
  /** Aborting while starting stops what was started and rejects with ClusterStartError. */
  signal?: AbortSignal;
}

/** One running child process. */
export interface ClusterChild {
  /** Unique name: "learner", "coordinator", "rollout-1", "verifier-2", … */
  readonly name: string;
  readonly service: ServiceName;
  readonly pid: number;
  readonly logFile: string;
  readonly ready: ReadyInfo;
  readonly process: ChildProcess;
}

/** Why the cluster failed: a child exited while nobody asked it to. */
export interface ChildFailure {
  readonly name: string;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly logTail: string;
}

export interface LocalCluster {
  readonly coordinatorAddress: string;
  readonly learnerAddress: string;
  readonly redisUrl: string;
  readonly prefix: string;
  readonly dataDir: string;
  readonly children: readonly ClusterChild[];
  /** Settles when a child exits unexpectedly (never rejects). */
  readonly failure: Promise<ChildFailure>;
  /** Sends `signal` to one child on purpose (fault tests); its exit is not a cluster failure. */
  kill(name: string, signal?: NodeJS.Signals): boolean;
  /**
   * Starts a child that kill() ended again, with the same environment and gRPC port (so the addresses the
   * other services hold stay valid); resolves once it printed READY (fault tests: a learner restart).
   */
  restart(name: string): Promise<void>;
  /** Stops every child (SIGTERM, bounded wait, SIGKILL) and the private Redis. Idempotent. */
  stop(): Promise<void>;
}

/** A cluster that could not start; the message names the child and quotes its log. */
export class ClusterStartError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ClusterStartError';
  }
}

/**
 * The entry point of a service: the `./main` export of its package (`@spark/<service>/main`), resolved
 * like any import, so the launcher follows each package's own manifest rather than a path convention.
 */
export function serviceMain(service: ServiceName): string {
  return fileURLToPath(SERVICE_ENTRIES[service]());
}

const SERVICE_ENTRIES: Record<ServiceName, () => string> = {
  learner: () => import.meta.resolve('@spark/learner/main'),
  coordinator: () => import.meta.resolve('@spark/coordinator/main'),
  verifier: () => import.meta.resolve('@spark/verifier/main'),
  'reward-synthesis': () => import.meta.resolve('@spark/reward-synthesis/main'),
  rollout: () => import.meta.resolve('@spark/rollout/main'),
};

/** The last `maxLines` lines of a file (at most 16 KiB read). */
export function tailFile(path: string, maxLines = 20): string {
  try {
    const size = statSync(path).size;
    const len = Math.min(size, 16 * 1024);
    const buf = Buffer.alloc(len);
    const fd = openSync(path, 'r');
    try {
      readSync(fd, buf, 0, len, size - len);
    } finally {
      closeSync(fd);
    }
    return buf.toString('utf8').split('\n').filter(Boolean).slice(-maxLines).join('\n');
  } catch {
    return '';
  }
}

interface Spawned {
  name: string;
  service: ServiceName;
  child: ChildProcess;
  logFile: string;
  log: WriteStream;
  ready: Promise<ReadyInfo>;
  exited: Promise<void>;
  /** Set when the launcher itself signalled the child (stop or kill). */
  expectedExit: boolean;
  /** The environment it was started with (restart reuses it). */
  env: NodeJS.ProcessEnv;
}

const MAX_LINE = 64 * 1024;

function spawnService(
  service: ServiceName,
  name: string,
  env: NodeJS.ProcessEnv,
  logsDir: string,
  readyTimeoutMs: number,
): Spawned {
  const main = serviceMain(service);
  if (!existsSync(main))
    throw new ClusterStartError(
      `service ${service} has no entry point (${main} is missing); cannot start ${name}`,
    );
  const logFile = join(logsDir, `${name}.log`);
  const log = createWriteStream(logFile, { flags: 'a' });
  // TypeScript sources (the workspace) run with tsx; the compiled tree (scripts/build-dist.mjs) with plain node.
  const child = spawn(process.execPath, [...(main.endsWith('.ts') ? ['--import', 'tsx'] : []), main], {
    cwd: REPO_ROOT,
    env,
    // an IPC channel the service watches: when the launcher dies (even by SIGKILL) the channel closes and
    // the service shuts down instead of living on as an orphan (Lifecycle.installSignalHandlers)
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  child.stderr?.pipe(log, { end: false });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  const ready = new Promise<ReadyInfo>((resolveReady, rejectReady) => {
    let buf = '';
    let done = false;
    const timer = setTimeout(() => {
      if (done) return;
      done = true;
      rejectReady(
        new ClusterStartError(
          `${name} did not print READY within ${Math.round(readyTimeoutMs / 1000)} s; last log lines (${logFile}):\n${tailFile(logFile)}`,
        ),
      );
    }, readyTimeoutMs);
    child.stdout?.on('data', (chunk: Buffer) => {
      log.write(chunk);
      if (done) return;
      buf += chunk.toString('utf8');
      for (;;) {
        const nl = buf.indexOf('\n');
        if (nl < 0) break;
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (line.startsWith('READY ')) {
          let info: ReadyInfo;
          try {
            info = JSON.parse(line.slice(6)) as ReadyInfo;
          } catch {
            info = {};
          }
          done = true;
          clearTimeout(timer);
          resolveReady(info);
          return;
        }
      }
      if (buf.length > MAX_LINE) buf = buf.slice(-MAX_LINE);
    });
    child.once('error', (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      rejectReady(new ClusterStartError(`${name} could not be started: ${err.message}`));
    });
    child.once('exit', (code, signal) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      // Give the log stream a moment to flush before quoting it.
      setTimeout(
        () =>
          rejectReady(
            new ClusterStartError(
              `${name} exited before it was ready (${signal ?? `status ${code}`}); last log lines (${logFile}):\n${tailFile(logFile)}`,
            ),
          ),
        100,
      );
    });
  });
  return { name, service, child, logFile, log, ready, exited, expectedExit: false, env };
}

async function terminate(children: readonly Spawned[], timeoutMs: number): Promise<void> {
  const alive = children.filter((c) => c.child.exitCode === null && c.child.signalCode === null);
  for (const c of alive) {
    c.expectedExit = true;
    c.child.kill('SIGTERM');
  }
  const all = Promise.all(alive.map((c) => c.exited));
  let timer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    all.then(() => false),
    new Promise<boolean>((r) => (timer = setTimeout(() => r(true), timeoutMs))),
  ]);
  clearTimeout(timer);
  if (timedOut) {
    for (const c of alive)
      if (c.child.exitCode === null && c.child.signalCode === null) c.child.kill('SIGKILL');
    await Promise.race([all, new Promise((r) => setTimeout(r, 5_000))]);
  }
  await Promise.all(children.map((c) => new Promise<void>((r) => c.log.end(() => r()))));
}

function boundedCount(value: number | undefined, what: string): number {
  const n = value ?? 1;
  if (!Number.isInteger(n) || n < 1 || n > 16) throw new ClusterStartError(`${what} must be 1…16, got ${n}`);
  return n;
}

/** Starts a local cluster; resolves once every service printed READY. */
export async function startLocalCluster(options: LocalClusterOptions): Promise<LocalCluster> {
  const say = options.log ?? (() => undefined);
  const rollouts = boundedCount(options.rolloutWorkers, 'rollout workers');
  const verifiers = boundedCount(options.verifierWorkers, 'verifier workers');
  const learnerRanks = boundedCount(options.learnerRanks, 'learner ranks');
  const readyTimeoutMs = options.readyTimeoutMs ?? 90_000;
  const stopTimeoutMs = options.stopTimeoutMs ?? 15_000;
  const prefix = options.prefix ?? 'spark';
  const dataDir = resolve(options.dataDir);
  const logsDir = join(dataDir, 'logs');
  mkdirSync(logsDir, { recursive: true });

  let privateRedis: PrivateRedis | null = null;
  let redisUrl = options.redisUrl ?? '';
  if (redisUrl) {
    if (!(await redisAnswers(redisUrl, 3_000)))
      throw new ClusterStartError(
        `no Redis answers at ${redactRedisUrl(redisUrl)} (from --redis-url / REDIS_URL)`,
      );
    say(`redis: using ${redactRedisUrl(redisUrl)}`);
  } else {
    privateRedis = await startPrivateRedis();
    redisUrl = privateRedis.url;
    say(`redis: private redis-server on port ${privateRedis.port}`);
  }

  const spawned: Spawned[] = [];
  let stopping: Promise<void> | null = null;
  let reportFailure: (f: ChildFailure) => void = () => undefined;
  const failure = new Promise<ChildFailure>((r) => (reportFailure = r));
  let failed = false;

  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      await terminate(spawned, stopTimeoutMs);
      await privateRedis?.stop();
    })());

  const baseEnv: NodeJS.ProcessEnv = {
    ...process.env,
    SPARK_LOCAL_MODE: 'true',
    SPARK_REDIS_URL: redisUrl,
    REDIS_URL: redisUrl,
    SPARK_REDIS_PREFIX: prefix,
    SPARK_GRPC_HOST: '127.0.0.1',
    SPARK_METRICS_HOST: '127.0.0.1',
    SPARK_GRPC_PORT: '0',
    SPARK_METRICS_PORT: '0',
    SPARK_DATA_DIR: dataDir,
    ...(options.env ?? {}),
  };

  const launch = (service: ServiceName, name: string, env: NodeJS.ProcessEnv): Spawned => {
    const s = spawnService(service, name, env, logsDir, readyTimeoutMs);
    spawned.push(s);
    s.child.once('exit', (code, signal) => {
      if (s.expectedExit || stopping) return;
      if (failed) return;
      failed = true;
      setTimeout(() => {
        reportFailure({ name, code, signal, logTail: tailFile(s.logFile) });
        if (options.stopOnFailure ?? true) void stop();
      }, 100);
    });
    return s;
  };

  const aborted = new Promise<never>((_, reject) => {
    const onAbort = () => reject(new ClusterStartError('start interrupted; everything started was stopped'));
    if (options.signal?.aborted) onAbort();
    else options.signal?.addEventListener('abort', onAbort, { once: true });
  });
  aborted.catch(() => undefined);
  const orAbort = <T>(p: Promise<T>): Promise<T> => Promise.race([p, aborted]);

  const wanted = new Set<ServiceName>(
    options.services ?? ['learner', 'coordinator', 'verifier', 'reward-synthesis', 'rollout'],
  );
  try {
    const readyByName = new Map<string, ReadyInfo>();
    let learnerAddress = '';
    const rest: Spawned[] = [];
    if (wanted.has('learner')) {
      const groupEnv = (rank: number): NodeJS.ProcessEnv =>
        learnerRanks > 1
          ? {
              SPARK_LEARNER_RANKS: String(learnerRanks),
              SPARK_LEARNER_RANK: String(rank),
              SPARK_COLLECTIVE_HOST: '127.0.0.1',
            }
          : {};
      const learner = launch('learner', 'learner', { ...baseEnv, ...groupEnv(0) });
      // the followers start with the leader: the group forms while the rest of the cluster starts
      for (let r = 1; r < learnerRanks; r++)
        rest.push(launch('learner', `learner-rank-${r}`, { ...baseEnv, ...groupEnv(r) }));
      const info = await orAbort(learner.ready);
      if (!info.grpcPort) throw new ClusterStartError(`learner's READY line has no grpcPort`);
      learnerAddress =
        typeof info.address === 'string' && info.address ? info.address : `127.0.0.1:${info.grpcPort}`;
      readyByName.set(learner.name, info);
      say(`learner ready on ${learnerAddress}`);
    }
    const env = learnerAddress ? { ...baseEnv, SPARK_LEARNER_ADDRESS: learnerAddress } : baseEnv;
    if (wanted.has('coordinator'))
      rest.push(
        launch('coordinator', 'coordinator', {
          ...env,
          SPARK_GRPC_PORT: String(options.coordinatorPort ?? 0),
          // The coordinator's checkpoint root (<dataDir>/jobs/<jobId> by default) and dataset root: job
          // specs may read only below these two (and `spark submit` uploads local dataset files there).
          SPARK_DATA_DIR: join(dataDir, 'jobs'),
          SPARK_DATASET_DIR: join(dataDir, 'datasets'),
        }),
      );
    if (wanted.has('reward-synthesis')) rest.push(launch('reward-synthesis', 'reward-synthesis', env));
    if (wanted.has('verifier'))
      for (let i = 1; i <= verifiers; i++) rest.push(launch('verifier', `verifier-${i}`, env));
    if (wanted.has('rollout'))
      for (let i = 1; i <= rollouts; i++) rest.push(launch('rollout', `rollout-${i}`, env));
    const infos = await orAbort(Promise.all(rest.map((s) => s.ready)));
    let coordinatorAddress = '';
    for (const [i, s] of rest.entries()) {
      const info = infos[i] ?? {};
      readyByName.set(s.name, info);
      if (s.service === 'learner') say(`${s.name} ready`);
      else if (s.service === 'coordinator') {
        if (!info.grpcPort) throw new ClusterStartError(`coordinator's READY line has no grpcPort`);
        coordinatorAddress = `127.0.0.1:${info.grpcPort}`;
      } else say(`${s.name} ready`);
    }
    if (coordinatorAddress) say(`coordinator ready on ${coordinatorAddress}`);
    const children: ClusterChild[] = spawned.map((s) => ({
      name: s.name,
      service: s.service,
      pid: s.child.pid ?? -1,
      logFile: s.logFile,
      ready: readyByName.get(s.name) ?? {},
      process: s.child,
    }));
    return {
      coordinatorAddress,
      learnerAddress,
      redisUrl,
      prefix,
      dataDir,
      children,
      failure,
      kill: (name, signal = 'SIGKILL') => {
        const s = spawned.findLast((c) => c.name === name);
        if (!s || s.child.exitCode !== null || s.child.signalCode !== null) return false;
        s.expectedExit = true;
        return s.child.kill(signal);
      },
      restart: async (name) => {
        const old = spawned.findLast((c) => c.name === name);
        if (!old) throw new Error(`no child named ${name}`);
        if (!old.expectedExit) throw new Error(`${name} was not ended by kill()`);
        if (stopping) throw new Error('the cluster is stopping');
        await old.exited;
        const port = readyByName.get(name)?.grpcPort;
        const s = launch(old.service, name, port ? { ...old.env, SPARK_GRPC_PORT: String(port) } : old.env);
        await s.ready;
      },
      stop,
    };
  } catch (err) {
    for (const s of spawned) s.ready.catch(() => undefined);
    await stop();
    throw err;
  }
}
