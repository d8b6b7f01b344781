// The rollout worker's policy models: at most one model per job (the newest version it was asked for),
// at most `maxJobs` jobs (least recently used evicted), each guarded by a per-job lock so a task's weight
// refresh and its sampling never interleave with another task of the same job. Weights come from the
// learner's PolicyService (fetchPolicy: chunked, sha256-verified) only when the cached version differs
// from the task's — a model is NEVER used at any other version than the one asked for.
import { FailedPreconditionError, UnavailableError } from '@spark/runtime';
import {
  fetchPolicy,
  jobKeys,
  parsePolicyHash,
  PolicyTransferError,
  type FetchedPolicy,
  type WorkerHost,
} from '@spark/contract';
import { grpc, type ClientOptions } from '@spark/runtime/grpc';
import type { ServiceMetrics } from '@spark/runtime/metrics';
import type { Redis } from '@spark/runtime/redis';
import { Model, parseHfConfig, type Device } from '@spark/kernels';

/** The learner does not (yet, or any more) hold the version a task asks for; the task is retried. */
export class PolicyVersionUnavailableError extends FailedPreconditionError {}

export interface ModelCacheOptions {
  redis: Redis;
  prefix: string;
  /** Fixed learner address; empty = read `learnerAddress` from the job's policy hash. */
  learnerAddress: string;
  /** The service token (a function when it comes from a re-read token file). */
  token: ClientOptions['token'];
  /** TLS for the weight fetch (`clientTlsFrom(config)`); absent = plaintext (local mode). */
  tls?: ClientOptions['tls'];
  fetchTimeoutMs: number;
  maxPolicyBytes: number;
  maxJobs: number;
  /** Where the cached models live (default 'cpu'; SPARK_DEVICE). */
  device?: Device;
  /** Called after each successful weight fetch. */
  onFetch?: (info: { seconds: number; bytes: number; version: number }) => void;
  /** Called when a task's version is refused (not held by the learner yet / any more). */
  onRefusal?: (reason: 'not-published' | 'not-held') => void;
}

interface Entry {
  jobId: string;
  version: number;
  /** SHA-256 of the cached weights (the learner's, verified on fetch). */
  sha256: string;
  configJson: string;
  model: Model;
  lastUsed: number;
}

export class ModelCache {
  private readonly entries = new Map<string, Entry>();
  private readonly locks = new Map<string, Promise<void>>();
  private closed = false;

  constructor(private readonly options: ModelCacheOptions) {}

  /** Versions currently cached, by job (for tests and logs). */
  get cached(): ReadonlyMap<string, number> {
    return new Map([...this.entries].map(([j, e]) => [j, e.version]));
  }

  /**
   * Runs `fn` with the job's model at exactly `version`, fetching the weights first when needed. Other
   * calls for the same job wait for this one.
   */
  async withModel<T>(jobId: string, version: number, fn: (model: Model) => Promise<T>): Promise<T> {
    const previous = this.locks.get(jobId) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const chained = previous.then(() => mine);
    this.locks.set(jobId, chained);
    await previous;
    try {
      if (this.closed) throw new UnavailableError('rollout worker is shutting down');
      const model = await this.ensure(jobId, version);
      return await fn(model);
    } finally {
      release();
      if (this.locks.get(jobId) === chained) this.locks.delete(jobId);
    }
  }

  private async ensure(jobId: string, version: number): Promise<Model> {
    const cur = this.entries.get(jobId);
    if (cur && cur.version === version && !cur.model.closed && (await this.stillPublished(cur))) {
      cur.lastUsed = Date.now();
      return cur.model;
    }
    const fetched = await this.fetch(jobId, version);
    if (cur && cur.configJson === fetched.configJson && !cur.model.closed) {
      // same architecture: overwrite the weights in place (the old version is gone from this moment)
      cur.version = -1;
      await cur.model.setParams(fetched.params);
      cur.version = version;
      cur.sha256 = fetched.sha256;
      cur.lastUsed = Date.now();
      return cur.model;
    }
    if (cur) this.drop(jobId);
    this.evictFor(jobId);
    const config = parseHfConfig(fetched.configJson, `policy config of job ${jobId}`);
    const model = await Model.create(config, 0, { device: this.options.device ?? 'cpu' });
    try {
      if (model.numParams !== fetched.params.length) {
        throw new PolicyTransferError(
          `policy of job ${jobId} has ${fetched.params.length} parameters, its config needs ${model.numParams}`,
        );
      }
      await model.setParams(fetched.params);
    } catch (err) {
      model.free();
      throw err;
    }
    this.entries.set(jobId, {
      jobId,
      version,
      sha256: fetched.sha256,
      configJson: fetched.configJson,
      model,
      lastUsed: Date.now(),
    });
    return model;
  }

  /**
   * False when the learner now publishes the cached version with other weights: it restarted behind the
   * job, which was rewound and trained that version again (the cached copy belongs to the abandoned line).
   */
  private async stillPublished(cur: Entry): Promise<boolean> {
    const o = this.options;
    const policy = parsePolicyHash(await o.redis.hgetall(jobKeys.policy(o.prefix, cur.jobId)));
    return !(policy && policy.version === cur.version && policy.sha256 !== cur.sha256);
  }

  private async fetch(jobId: string, version: number): Promise<FetchedPolicy> {
    const o = this.options;
    const policy = parsePolicyHash(await o.redis.hgetall(jobKeys.policy(o.prefix, jobId)));
    // the policy hash says which version the learner published last: asking for a newer one is pointless
    // (when the hash is missing, a configured learner may still load the job on demand)
    const published = policy === null ? -1 : policy.version;
    if (published < version && (published >= 0 || !o.learnerAddress)) {
      o.onRefusal?.('not-published');
      throw new PolicyVersionUnavailableError(
        `job ${jobId}: policy version ${version} is not published yet (latest ${published < 0 ? 'none' : published})`,
      );
    }
    const address = o.learnerAddress || policy?.learnerAddress || '';
    if (!address) throw new UnavailableError(`job ${jobId}: no learner address (config or policy hash)`);
    const t0 = performance.now();
    let fetched: FetchedPolicy;
    try {
      fetched = await fetchPolicy(address, jobId, version, {
        token: o.token,
        ...(o.tls ? { tls: o.tls } : {}),
        defaultDeadlineMs: o.fetchTimeoutMs,
        maxBytes: o.maxPolicyBytes,
      });
    } catch (err) {
      if ((err as { code?: unknown }).code === grpc.status.FAILED_PRECONDITION) {
        o.onRefusal?.('not-held');
        throw new PolicyVersionUnavailableError(
          `job ${jobId}: the learner does not hold policy version ${version}: ${(err as Error).message}`,
        );
      }
      throw err;
    }
    o.onFetch?.({ seconds: (performance.now() - t0) / 1000, bytes: fetched.bytes, version });
    return fetched;
  }

  private drop(jobId: string): void {
    const e = this.entries.get(jobId);
    if (!e) return;
    this.entries.delete(jobId);
    e.model.free();
  }

  /** Frees least recently used jobs (not locked by a running task) until there is room for one more. */
  private evictFor(jobId: string): void {
    const victims = [...this.entries.values()]
      .filter((e) => e.jobId !== jobId && !this.locks.has(e.jobId))
      .sort((a, b) => a.lastUsed - b.lastUsed);
    while (this.entries.size >= this.options.maxJobs && victims.length) {
      this.drop((victims.shift() as Entry).jobId);
    }
  }

  /** Frees the models of jobs not in `active` (jobs that ended), except one a task is using. */
  retainOnly(active: ReadonlySet<string>): string[] {
    const dropped: string[] = [];
    for (const jobId of [...this.entries.keys()]) {
      if (active.has(jobId) || this.locks.has(jobId)) continue;
      this.drop(jobId);
      dropped.push(jobId);
    }
    return dropped;
  }

  /** Waits for running tasks, then frees every model. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all([...this.locks.values()]);
    for (const jobId of [...this.entries.keys()]) this.drop(jobId);
  }
}

/** The weight-fetch metrics of a model cache (spark_rollout_weight_fetch_*, _version_refusals_total). */
export function modelCacheMetrics(metrics: ServiceMetrics): Pick<ModelCacheOptions, 'onFetch' | 'onRefusal'> {
  const fetchSeconds = metrics.histogram({
    name: 'weight_fetch_seconds',
    help: 'Time to fetch and verify one policy from the learner',
    buckets: [0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60],
  });
  const fetchBytes = metrics.counter({ name: 'weight_fetch_bytes_total', help: 'Policy bytes fetched' });
  const refusals = metrics.counter({
    name: 'version_refusals_total',
    help: 'Shards not sampled because their policy version was not available (retried later)',
    labelNames: ['reason'] as const,
  });
  return {
    onFetch: ({ seconds, bytes }) => {
      fetchSeconds.observe(seconds);
      fetchBytes.inc(bytes);
    },
    onRefusal: (reason) => refusals.inc({ reason }),
  };
}

/**
 * Frees, every `everyMs`, the models of jobs that left the active set (memory is bounded by maxJobs
 * anyway). A processor of the service skeleton: start() begins, close() stops.
 */
export class InactiveModelPruner {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly models: ModelCache,
    private readonly host: WorkerHost,
    private readonly everyMs: number,
  ) {}

  async start(): Promise<void> {
    const { redis, config, logger } = this.host;
    this.timer = setInterval(() => {
      redis.smembers(jobKeys.active(config.redisPrefix)).then(
        (active) => {
          const dropped = this.models.retainOnly(new Set(active));
          if (dropped.length) logger.info({ jobs: dropped }, 'freed the models of inactive jobs');
        },
        (err: unknown) => logger.warn({ err }, 'cannot read the active job set'),
      );
    }, this.everyMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
  }
}
