// The verify worker: serves the `verify-<job>` queue of every active job (JobQueueWorkers). Each
// VerifyTask (one rollout shard) is scored with the verifier library and every VerifiedGroup is HSET into
// the phase's group hash (field = groupId), so a redelivered shard rewrites the same fields and never
// duplicates. Malformed payloads fail at once (UnrecoverableError); Redis errors retry with backoff.
// Metrics: spark_verifier_responses_verified_total{kind,result}, _verify_seconds, _reward_ratio{kind},
// _tasks_total{outcome}.
import { UnavailableError } from '@spark/runtime';
import {
  JobQueueProcessor,
  jobKeys,
  readJobSpec,
  taskOnJobQueue,
  type KindName,
  type VerifyTask,
  type WorkerHost,
} from '@spark/contract';
import type { ServiceMetrics } from '@spark/runtime/metrics';
import type { Job } from '@spark/runtime/redis';

import type { Verifier } from '@spark/verify';
import { parseVerifyTask, scoreTask, type ScoreOptions } from './score.js';

/** What a verify task returns to BullMQ (small; the groups themselves go to the hash). */
export interface VerifyTaskResult {
  readonly groups: number;
  readonly responses: number;
  readonly correct: number;
}

export interface VerifyWorkerOptions {
  verifier: Verifier;
  /** True once the verifier's threads are closing: results scored then are not stored. */
  verifierClosed: () => boolean;
  concurrency: number;
  pollMs: number;
  lockMs: number;
  stalledIntervalMs: number;
}

function verifyMetrics(metrics: ServiceMetrics) {
  return {
    verified: metrics.counter({
      name: 'responses_verified_total',
      help: 'Responses scored, by prompt kind and result (correct/wrong)',
      labelNames: ['kind', 'result'] as const,
    }),
    seconds: metrics.histogram({
      name: 'verify_seconds',
      help: 'Time to score one response',
      buckets: [0.0001, 0.0005, 0.002, 0.01, 0.05, 0.2, 1],
    }),
    rewardRatio: metrics.gauge({
      name: 'reward_ratio',
      help: 'Mean reward of the last scored shard, by prompt kind',
      labelNames: ['kind'] as const,
    }),
    tasksTotal: metrics.counter({
      name: 'tasks_total',
      help: 'Verify tasks finished, by outcome',
      labelNames: ['outcome'] as const,
    }),
  };
}

/** The per-job verify workers. A processor of the service skeleton. */
export class VerifyWorker extends JobQueueProcessor<VerifyTask, VerifyTaskResult> {
  private readonly m: ReturnType<typeof verifyMetrics>;
  /** Per job: its spec's scoring settings, read once (a spec never changes after submission). */
  private readonly scoring = new Map<string, Promise<ScoreOptions>>();

  constructor(
    host: WorkerHost,
    private readonly options: VerifyWorkerOptions,
  ) {
    super(host, 'verify', {
      pollMs: options.pollMs,
      workerOptions: {
        concurrency: options.concurrency,
        lockDuration: options.lockMs,
        stalledInterval: options.stalledIntervalMs,
      },
    });
    this.m = verifyMetrics(host.metrics);
  }

  /** The job's scoring settings from its stored spec (defaults when the spec is gone). */
  private scoringOf(jobId: string): Promise<ScoreOptions> {
    let found = this.scoring.get(jobId);
    if (!found) {
      found = readJobSpec(this.host.redis, this.host.config.redisPrefix, jobId).then((spec) =>
        spec?.verifyUnboxed ? { unboxed: true } : {},
      );
      // a failed read is not cached: the next task of the job reads again
      found.catch(() => this.scoring.delete(jobId));
      this.scoring.set(jobId, found);
      // bounded: the oldest job's entry goes first (it is read again if that job is still served)
      if (this.scoring.size > 256) this.scoring.delete(this.scoring.keys().next().value as string);
    }
    return found;
  }

  protected async process(jobId: string, job: Job<VerifyTask, VerifyTaskResult>): Promise<VerifyTaskResult> {
    const { m } = this;
    let task: VerifyTask;
    try {
      task = taskOnJobQueue(job.data, jobId, parseVerifyTask);
    } catch (err) {
      m.tasksTotal.inc({ outcome: 'poison' });
      throw err;
    }
    const sums = new Map<KindName, { n: number; r: number }>();
    const scoring = await this.scoringOf(jobId);
    const groups = await scoreTask(
      this.options.verifier,
      task,
      (kind, reward, s) => {
        m.verified.inc({ kind, result: reward === 1 ? 'correct' : 'wrong' });
        m.seconds.observe(s);
        const acc = sums.get(kind) ?? { n: 0, r: 0 };
        acc.n++;
        acc.r += reward;
        sums.set(kind, acc);
      },
      scoring,
    );
    // a shard still scoring when shutdown outran its grace period may hold time-outs caused by the
    // closing worker threads: never store those, let BullMQ redeliver the shard instead
    if (this.options.verifierClosed())
      throw new UnavailableError('verifier closed while scoring; the shard will be redelivered');
    for (const [kind, { n, r }] of sums) m.rewardRatio.set({ kind }, r / n);
    if (groups.length) {
      const key = jobKeys.groups(this.host.config.redisPrefix, jobId, task.step, task.phase);
      await this.host.redis.hset(key, Object.fromEntries(groups.map((g) => [g.groupId, JSON.stringify(g)])));
    }
    m.tasksTotal.inc({ outcome: 'ok' });
    let responses = 0;
    let correct = 0;
    for (const g of groups)
      for (const r of g.responses) {
        responses++;
        correct += r.reward;
      }
    this.host.logger.debug({ job: jobId, shard: task.shardId, responses, correct }, 'shard verified');
    return { groups: groups.length, responses, correct };
  }
}
