// The chaos run (issue 15): a SPARK job on a real local cluster (a redis-server with AOF on, the five
// services as processes) while processes of every kind — rollout, verifier, reward-synthesis, learner,
// coordinator, and Redis itself — are SIGKILLed at moments drawn from a seed and restarted. Afterwards the
// invariants are read from Redis and from the learner's records (see checkInvariants). Used by
// `npm run chaos` (test/chaos/main.ts) and, short, by test/chaos.test.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { JobClient } from '@spark/cli/client';
import { startLocalCluster, tailFile, type LocalCluster } from '@spark/cli/launcher';
import { jobKeys, parseLearnResult, parseSynthesisResult, queueName, type QueueRole } from '@spark/contract';
import { Algorithm, JobSpec } from '@spark/protocol';
import { connectRedis, createQueue, redisAnswers, type Redis } from '@spark/runtime/redis';
import { until } from '@spark/runtime/testing';

export const KINDS = ['rollout', 'verifier', 'reward-synthesis', 'learner', 'coordinator', 'redis'] as const;
/** With a learner group (learnerRanks > 1): `learner` is the leader (rank 0), `learner-follower` a follower rank. */
export type Kind = (typeof KINDS)[number] | 'learner-follower';

/** The kinds a run kills: every service kind and Redis, and a follower rank when the learner is a group. */
export function kindsFor(learnerRanks: number): Kind[] {
  return learnerRanks > 1 ? [...KINDS, 'learner-follower'] : [...KINDS];
}

export interface ChaosOptions {
  kills: number;
  seed: number;
  /** Fail (and stop) past this many ms from the cluster's start. */
  boundMs: number;
  /** Learner ranks (default 1): above 1 the learner is a group and follower ranks are killed too. */
  learnerRanks?: number;
  /** Progress lines; default none. */
  log?: (line: string) => void;
}

export interface KillRecord {
  kind: Kind;
  /** ms since the job was submitted. */
  at: number;
  /** The job's step when it fired. */
  step: number;
  /** ms from the kill to the next job event after the restart (null: the job ended first). */
  recoverMs: number | null;
}

export interface ChaosReport {
  seed: number;
  learnerRanks: number;
  kills: KillRecord[];
  jobId: string;
  state: string;
  steps: number;
  totalMs: number;
  boundMs: number;
  rewinds: number;
  events: number;
  /** Invariant violations; empty when all hold. */
  violations: string[];
}

/** mulberry32: a small seeded PRNG, so a seed reproduces the kinds and delays. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * The kill plan: each round covers every kind of `kinds` once, in an order drawn from the seed. Kill i of k
 * fires once the job's step reaches `atStep` — drawn within the i-th of k equal windows of the job's
 * steps, the last ending 6 steps before the end — plus a short delay (< 400 ms) drawn from the seed, so
 * kills land at varied phases of a step. Triggering on steps, not on wall time, keeps every kill inside
 * the job however fast or slow the machine runs it.
 */
export function plan(
  kills: number,
  seed: number,
  kinds: readonly Kind[] = KINDS,
): { kind: Kind; atStep: number; delayMs: number }[] {
  const rnd = prng(seed);
  const steps = chaosSteps(kills);
  const window = (steps - 8) / kills;
  const out: { kind: Kind; atStep: number; delayMs: number }[] = [];
  while (out.length < kills) {
    const round = [...kinds];
    for (let i = round.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [round[i], round[j]] = [round[j] as Kind, round[i] as Kind];
    }
    for (const kind of round) {
      if (out.length >= kills) break;
      const atStep = 2 + Math.floor(out.length * window + rnd() * window * 0.75);
      out.push({ kind, atStep, delayMs: Math.floor(rnd() * 400) });
    }
  }
  return out;
}

/** The job's steps for k kills: 8 per kill and 6 more (a kill cycle takes a few seconds, a step under one). */
export function chaosSteps(kills: number): number {
  return 6 + 8 * kills;
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => res(port));
    });
  });
}

/** A redis-server with AOF (`appendonly yes`, `appendfsync everysec`) that can be killed and restarted on the same port and dir. */
export class AofRedis {
  private child: ChildProcess | null = null;
  private readonly onExit = () => this.child?.kill('SIGKILL');
  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }
  static async start(): Promise<AofRedis> {
    const r = new AofRedis(await freePort(), mkdtempSync(join(tmpdir(), 'spark-chaos-redis-')));
    process.once('exit', r.onExit);
    await r.spawn();
    return r;
  }
  private async spawn(): Promise<void> {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'yes',
        '--appendfsync',
        'everysec',
        '--dir',
        this.dir,
        '--maxmemory-policy',
        'noeviction',
      ],
      { stdio: ['ignore', 'ignore', 'inherit'] },
    );
    this.child = child;
    const exited = new Promise<never>((_, rej) =>
      child.once('exit', (code, sig) => rej(new Error(`redis-server exited (${sig ?? code})`))),
    );
    exited.catch(() => undefined);
    await Promise.race([
      until(() => redisAnswers(this.url, 500), {
        timeoutMs: 30_000,
        intervalMs: 50,
        message: 'redis-server answers',
      }),
      exited,
    ]);
  }
  /** SIGKILL, then start again on the same port and dir (the AOF is replayed). */
  async killAndRestart(): Promise<void> {
    const c = this.child;
    if (c && c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await gone;
    }
    await this.spawn();
  }
  async stop(): Promise<void> {
    const c = this.child;
    if (c && c.exitCode === null && c.signalCode === null) {
      const gone = new Promise((r) => c.once('exit', r));
      c.kill('SIGKILL');
      await gone;
    }
    process.removeListener('exit', this.onExit);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** The job: tiny preset, checkpoints every 2 steps, chaosSteps(kills) steps. */
export function chaosJob(kills: number, seed: number): JobSpec {
  return JobSpec.fromPartial({
    name: 'chaos',
    model: 'tiny',
    algorithm: Algorithm.ALGORITHM_SPARK,
    seed,
    trainSize: 4 * chaosSteps(kills),
    batchSize: 4,
    groupSize: 2,
    maxSteps: chaosSteps(kills),
    warmupSteps: 1,
    warmupBatchSize: 8,
    maxNewTokens: 16,
    miniBatchSize: 8,
    microBatchSize: 8,
    evalSize: 4,
    checkpointInterval: 2,
  });
}

/** The highest event seq in the job's stream (0 when none or Redis is down). */
async function lastSeq(redis: Redis, prefix: string, jobId: string): Promise<number> {
  try {
    const last = await redis.xrevrange(jobKeys.events(prefix, jobId), '+', '-', 'COUNT', 1);
    const f = last[0]?.[1] ?? [];
    const i = f.indexOf('seq');
    return i >= 0 ? Number(f[i + 1]) : 0;
  } catch {
    return 0;
  }
}

/** The job's current step (its resume cursor's; -1 when Redis is down). */
async function jobStep(redis: Redis, prefix: string, jobId: string): Promise<number> {
  try {
    return Number((await redis.hget(jobKeys.job(prefix, jobId), 'step')) ?? 0);
  } catch {
    return -1;
  }
}

async function jobState(redis: Redis, prefix: string, jobId: string): Promise<string> {
  try {
    return (await redis.hget(jobKeys.job(prefix, jobId), 'state')) ?? '';
  } catch {
    return '';
  }
}

const TERMINAL = /SUCCEEDED|FAILED|CANCELLED/;

const ROLES: readonly QueueRole[] = ['rollout', 'verify', 'synthesis', 'learn'];

/**
 * What a failed run leaves to read (the CI machine is gone afterwards): the job's hash and last event as
 * this harness's own Redis connection sees them (or why it cannot), each job queue's BullMQ lists, and the
 * last lines of every child's log.
 */
async function diagnose(redis: Redis, redisUrl: string, c: LocalCluster, jobId: string): Promise<string> {
  const out: string[] = [];
  try {
    const job = await redis.hgetall(jobKeys.job(c.prefix, jobId));
    const { state, step, cursor, policyVersion, message } = job;
    out.push(`job hash: ${JSON.stringify({ state, step, cursor, policyVersion, message })}`);
    const last = await redis.xrevrange(jobKeys.events(c.prefix, jobId), '+', '-', 'COUNT', 1);
    out.push(`last event: ${JSON.stringify(last[0] ?? null).slice(0, 600)}`);
    for (const role of ROLES) {
      const q = createQueue(queueName(role, jobId), { url: redisUrl, prefix: c.prefix });
      try {
        const n = await q.getJobCounts('wait', 'active', 'prioritized', 'delayed', 'failed', 'completed');
        out.push(`queue ${role}: ${JSON.stringify(n)}`);
      } finally {
        await q.close();
      }
    }
  } catch (err) {
    out.push(`Redis, from the harness: ${err instanceof Error ? err.message : String(err)}`);
  }
  for (const child of c.children) {
    const lines = tailFile(child.logFile, 8)
      .split('\n')
      .map((l) => `  ${l.length > 400 ? `${l.slice(0, 400)}…` : l}`);
    out.push(`${child.name} (${child.logFile}):`, ...lines);
  }
  return out.join('\n');
}

export async function runChaos(options: ChaosOptions): Promise<ChaosReport> {
  const say = options.log ?? (() => undefined);
  const t0 = Date.now();
  const ranks = options.learnerRanks ?? 1;
  const deadline = t0 + options.boundMs;
  const left = () => Math.max(1, deadline - Date.now());
  const redisServer = await AofRedis.start();
  let cluster: LocalCluster | null = null;
  let client: JobClient | null = null;
  let jobIdSeen: string | null = null;
  const redis = connectRedis(redisServer.url);
  redis.on('error', () => undefined);
  try {
    cluster = await startLocalCluster({
      dataDir: mkdtempSync(join(tmpdir(), 'spark-chaos-')),
      redisUrl: redisServer.url,
      prefix: 'chaos',
      learnerRanks: ranks,
      // short task locks (rollout, verifier, reward-synthesis: SPARK_LOCK_MS; learner: SPARK_WORKER_LOCK_MS) and stalled
      // checks, so a killed worker's task comes back in seconds (docs/operations.md, task locks); a learner
      // group notices a lost rank within the collective time-out, and gives up a rendezvous with a departed
      // one within five of them (docs/kernels.md): 20 s, not the default minute
      env: {
        SPARK_LOCK_MS: '5000',
        SPARK_WORKER_LOCK_MS: '5000',
        SPARK_STALLED_INTERVAL_MS: '2000',
        SPARK_COLLECTIVE_TIMEOUT_MS: '20000',
      },
      stopOnFailure: false,
    });
    const c = cluster;
    const fail = c.failure.then((f) => {
      throw new Error(`${f.name} died unasked (${f.signal ?? f.code}):\n${f.logTail}`);
    });
    fail.catch(() => undefined);
    client = new JobClient({ address: c.coordinatorAddress, token: null, deadlineMs: 30_000 });
    const spec = chaosJob(options.kills, options.seed);
    const { jobId } = await client.submit(spec);
    jobIdSeen = jobId;
    const submitted = Date.now();
    say(`job ${jobId}: ${spec.maxSteps} steps, ${options.kills} kills, seed ${options.seed}`);
    const kills: KillRecord[] = [];
    const ended = async () => TERMINAL.test(await jobState(redis, c.prefix, jobId));
    for (const { kind, atStep, delayMs } of plan(options.kills, options.seed, kindsFor(ranks))) {
      // the drawn moment: after the previous recovery, once the job reached the drawn step, plus a delay
      await Promise.race([
        until(async () => (await jobStep(redis, c.prefix, jobId)) >= atStep || (await ended()), {
          timeoutMs: left(),
          intervalMs: 20,
          message: `the job to reach step ${atStep} for the next kill`,
        }),
        fail,
      ]);
      await new Promise((r) => setTimeout(r, delayMs));
      if (await ended()) break;
      const before = await lastSeq(redis, c.prefix, jobId);
      const step = await jobStep(redis, c.prefix, jobId);
      const killedAt = Date.now();
      if (kind === 'redis') await redisServer.killAndRestart();
      else {
        // follower ranks in turn (learner-rank-1 … learner-rank-(N−1))
        const follower = `learner-rank-${1 + (kills.filter((k) => k.kind === kind).length % Math.max(1, ranks - 1))}`;
        const name =
          kind === 'rollout'
            ? 'rollout-1'
            : kind === 'verifier'
              ? 'verifier-1'
              : kind === 'learner-follower'
                ? follower
                : kind;
        if (!c.kill(name, 'SIGKILL')) throw new Error(`${name} was not running`);
        await Promise.race([c.restart(name), fail]);
      }
      const rec: KillRecord = { kind, at: killedAt - submitted, step, recoverMs: null };
      kills.push(rec);
      await Promise.race([
        until(
          async () => {
            if ((await lastSeq(redis, c.prefix, jobId)) > before) return true;
            return ended();
          },
          { timeoutMs: left(), intervalMs: 20, message: `the job to progress after the ${kind} kill` },
        ),
        fail,
      ]);
      if ((await lastSeq(redis, c.prefix, jobId)) > before) rec.recoverMs = Date.now() - killedAt;
      say(
        `kill ${kills.length}: ${kind} at +${(rec.at / 1000).toFixed(1)} s (step ${step}), recovered ${rec.recoverMs === null ? '(job ended)' : `in ${(rec.recoverMs / 1000).toFixed(1)} s`}`,
      );
    }
    await Promise.race([
      until(ended, { timeoutMs: left(), intervalMs: 100, message: 'the job to end' }),
      fail,
    ]);
    const state = await jobState(redis, c.prefix, jobId);
    const watcher = client;
    const inv = await checkInvariants(redis, c.prefix, jobId, spec, () =>
      watcher.watch(jobId, { afterSeq: 0 }),
    );
    if (!/SUCCEEDED/.test(state)) inv.violations.unshift(`job ended ${state}`);
    if (kills.length < options.kills)
      inv.violations.push(`the job ended after ${kills.length} of ${options.kills} kills`);
    const totalMs = Date.now() - t0;
    if (totalMs > options.boundMs)
      inv.violations.push(`took ${totalMs} ms, past the bound of ${options.boundMs} ms`);
    if (inv.violations.length) inv.violations.push(await diagnose(redis, redisServer.url, c, jobId));
    return {
      seed: options.seed,
      learnerRanks: ranks,
      kills,
      jobId,
      state: state.replace(/^JOB_STATE_/, ''),
      steps: spec.maxSteps,
      totalMs,
      boundMs: options.boundMs,
      ...inv,
    };
  } catch (err) {
    if (cluster === null || jobIdSeen === null) throw err;
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(`${why}\n${await diagnose(redis, redisServer.url, cluster, jobIdSeen)}`, { cause: err });
  } finally {
    client?.close();
    redis.disconnect();
    await cluster?.stop();
    await redisServer.stop();
  }
}

/**
 * The invariants, read after the job ended:
 * - every step 0..maxSteps-1 has a policy update, each (step, phase) one LearnResult, none with stale groups,
 *   each covering B × G sequences; the policy versions along the final lineage are warmup+1..K, no gaps or
 *   repeats, K being the job's recorded version (abandoned updates were deleted by the rewinds, and every
 *   rewind event lists them);
 * - no recycled item was released twice (reward-synthesis's per-step results);
 * - the event stream's seq is 1..N, contiguous, no duplicates, and WatchJob from the start (`replay`)
 *   replays exactly it.
 * A record that does not parse through the contract's schema is a violation. test/chaos-invariants.test.ts
 * corrupts each of these and checks that the violation is reported.
 */
export async function checkInvariants(
  redis: Redis,
  prefix: string,
  jobId: string,
  spec: JobSpec,
  replay: () => AsyncIterable<{ seq: number }>,
): Promise<{ violations: string[]; rewinds: number; events: number }> {
  const violations: string[] = [];
  const versions: number[] = [];
  for (let step = 0; step < spec.maxSteps; step++)
    for (const phase of ['policy', 'reward']) {
      const text = await redis.get(jobKeys.learned(prefix, jobId, step, phase));
      if (!text) {
        if (phase === 'policy') violations.push(`step ${step}: no policy update`);
        continue;
      }
      let r;
      try {
        r = parseLearnResult(JSON.parse(text));
      } catch (err) {
        violations.push(`${step}/${phase}: unreadable LearnResult (${String(err).slice(0, 200)})`);
        continue;
      }
      versions.push(r.policyVersion);
      if (r.staleGroups !== 0) violations.push(`${step}/${phase}: ${r.staleGroups} stale groups`);
      if (r.sequences + (r.skippedSequences ?? 0) !== spec.batchSize * spec.groupSize)
        violations.push(`${step}/${phase}: ${r.sequences} + ${r.skippedSequences ?? 0} sequences`);
    }
  versions.sort((a, b) => a - b);
  const want = versions.map((_, i) => i + 1 + spec.warmupSteps);
  if (versions.join() !== want.join())
    violations.push(`policy versions ${versions.join()} (want ${want.join()})`);

  // the final model is the end of that lineage: the job's recorded policy version is the last update's
  const final = Number(await redis.hget(jobKeys.job(prefix, jobId), 'policyVersion'));
  if (versions.length && final !== versions[versions.length - 1])
    violations.push(
      `the job records policy version ${final}, its last update made ${versions[versions.length - 1]}`,
    );

  const seen = new Map<string, number>();
  for (let step = 0; step < spec.maxSteps; step++) {
    const text = await redis.get(jobKeys.synth(prefix, jobId, step));
    if (!text) continue;
    let res;
    try {
      res = parseSynthesisResult(JSON.parse(text));
    } catch (err) {
      violations.push(`step ${step}: unreadable SynthesisResult (${String(err).slice(0, 200)})`);
      continue;
    }
    for (const item of res.released ?? []) {
      const prev = seen.get(item.promptId);
      if (prev !== undefined)
        violations.push(`recycled item ${item.promptId} released at steps ${prev} and ${step}`);
      seen.set(item.promptId, step);
    }
  }

  const stream = await redis.xrange(jobKeys.events(prefix, jobId), '-', '+');
  const seqs = stream.map(([, f]) => Number(f[f.indexOf('seq') + 1]));
  const rewindEvents = stream.map(([, f]) => f.join(' ')).filter((e) => e.includes('rewound from '));
  const rewinds = rewindEvents.length;
  for (const e of rewindEvents)
    if (!/abandoned updates: \S/.test(e))
      violations.push(`a rewind event lists no abandoned updates: ${e.slice(0, 300)}`);
  seqs.forEach((s, i) => {
    if (s !== i + 1) violations.push(`event ${i}: seq ${s} (want ${i + 1})`);
  });
  const watched: number[] = [];
  for await (const e of replay()) watched.push(e.seq);
  if (watched.join() !== seqs.join())
    violations.push(
      `WatchJob replayed seqs ${watched.length} events, the stream holds ${seqs.length} (or out of order)`,
    );
  return { violations: violations.slice(0, 50), rewinds, events: seqs.length };
}

/** The summary table: kills per kind, survived, time to recover (median / max) per kind. */
export function table(r: ChaosReport): string {
  const rows = [['kind', 'kills', 'survived', 'recover median s', 'recover max s']];
  for (const kind of kindsFor(r.learnerRanks)) {
    const ks = r.kills.filter((k) => k.kind === kind);
    const rec = ks.flatMap((k) => (k.recoverMs === null ? [] : [k.recoverMs])).sort((a, b) => a - b);
    // survived: the job made progress again after the kill (or ended SUCCEEDED before it could)
    const ok = ks.filter((k) => k.recoverMs !== null || r.state === 'SUCCEEDED').length;
    rows.push([
      kind,
      String(ks.length),
      String(ok),
      rec.length ? ((rec[Math.floor(rec.length / 2)] as number) / 1000).toFixed(1) : '-',
      rec.length ? ((rec[rec.length - 1] as number) / 1000).toFixed(1) : '-',
    ]);
  }
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((row) => row[i]!.length)));
  const lines = rows.map((row) => row.map((c, i) => c.padEnd(w[i]!)).join('  '));
  lines.push(
    `seed ${r.seed}; ${r.learnerRanks} learner rank${r.learnerRanks > 1 ? 's' : ''}; job ${r.state} (${r.steps} steps, ${r.rewinds} rewinds, ${r.events} events); total ${(r.totalMs / 1000).toFixed(1)} s (bound ${(r.boundMs / 1000).toFixed(0)} s)`,
  );
  lines.push(r.violations.length ? `VIOLATIONS:\n  ${r.violations.join('\n  ')}` : 'invariants: all hold');
  return lines.join('\n');
}
