// End to end through the REAL services, in-process: learner (native model, PolicyService), rollout
// (native sampler, weights fetched over gRPC), verifier, reward-synthesis and the coordinator, on a real
// Redis and real gRPC on loopback. A tiny SPARK job (preset tiny, 2 warm-up steps, 2 RL steps of B = 4,
// G = 4) must finish SUCCEEDED — with the coordinator restarted in the middle of the first RL step — and
// show: the evaluation before RL and at the end, a reward phase that ran, every group trained exactly
// once (each update's sequences = its groups × G, no stale group, one policy version per update) and a
// final checkpoint on disk.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { jobKeys, type LearnResult } from '@spark/contract';
import { z } from '@spark/runtime/config';
import { clientSetup } from '@spark/runtime/grpc';
import { createLogger } from '@spark/runtime/logging';
import {
  Algorithm,
  JobEventType,
  JobServiceClient,
  JobSpec,
  JobState,
  Phase,
  type JobEvent,
  type JobStatus,
} from '@spark/protocol';
import { connectRedis } from '@spark/runtime/redis';
import { testPrefix, testRedisUrl, until } from '@spark/runtime/testing';
import { learnerConfigShape, startLearner } from '@spark/learner';
import { startRewardSynthesis, synthesisConfig } from '@spark/reward-synthesis';
import { rolloutConfig, startRollout } from '@spark/rollout';
import { startVerifierService, verifierServiceConfig } from '@spark/verifier';

import { coordinatorConfig, startCoordinator, type Coordinator } from '@spark/coordinator';

const logger = createLogger({ service: 'it', level: 'silent' });
// The coordinator's safety-net poll, at its maximum (coordinator config: pollMs ≤ 10 s): a phase that took
// longer can only have waited for it. The slowest phase is reported (diagnostic) to show the margin.
const POLL_MS = 10_000;

describe('a tiny SPARK job through the real services', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spark-it-'));
  const closers: (() => Promise<void>)[] = [];
  let client: JobServiceClient;
  let url: string;
  let prefix: string;

  before(async () => {
    url = await testRedisUrl();
    prefix = testPrefix('coord-it');
    const base = { localMode: true, redisUrl: url, redisPrefix: prefix, logLevel: 'silent' as const };
    const learner = await startLearner(
      z.strictObject(learnerConfigShape).parse({ ...base, dataDir: join(dir, 'learner') }),
      { logger },
    );
    closers.push(() => learner.close());
    const rollout = await startRollout(rolloutConfig(base), { logger });
    closers.push(() => rollout.close());
    const verifier = await startVerifierService(verifierServiceConfig(base), { logger });
    closers.push(() => verifier.close());
    const synth = await startRewardSynthesis(synthesisConfig(base), { logger });
    closers.push(() => synth.close());
    closers.push(() => stopCoord());
    await startCoord();
  });

  let coord: Coordinator | null = null;
  async function startCoord(): Promise<void> {
    const c = await startCoordinator(
      coordinatorConfig({
        localMode: true,
        redisUrl: url,
        redisPrefix: prefix,
        logLevel: 'silent',
        dataDir: join(dir, 'jobs'),
        // the longest safety-net poll: results must be noticed through queue events, not by polling
        pollMs: POLL_MS,
        schedulePollMs: 50,
        phaseTimeoutMs: 120_000,
      }),
      { logger },
    );
    coord = c;
    const setup = clientSetup({ token: null, defaultDeadlineMs: 10_000 });
    client = new JobServiceClient(`127.0.0.1:${c.grpcPort}`, setup.credentials, setup.options);
  }
  async function stopCoord(): Promise<void> {
    client.close();
    await coord?.close();
    coord = null;
  }

  after(async () => {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  it('runs warm-up, evals, policy and reward phases, training every group exactly once', async (t) => {
    const spec = JobSpec.fromPartial({
      name: 'it',
      model: 'tiny',
      algorithm: Algorithm.ALGORITHM_SPARK,
      batchSize: 4,
      groupSize: 4,
      trainSize: 8,
      epochs: 1,
      maxNewTokens: 24,
      warmupSteps: 2,
      warmupBatchSize: 8,
      warmupLearningRate: 1e-3,
      warmupLrSchedule: 'cosine',
      evalSize: 4,
      miniBatchSize: 16,
      microBatchSize: 8,
      seed: 3,
    });
    const submitted = await new Promise<{ jobId: string }>((resolve, reject) =>
      client.submitJob({ spec }, (err, res) => (err ? reject(err) : resolve(res))),
    );
    const jobId = submitted.jobId;
    const events: JobEvent[] = [];
    // watch until the first policy phase is reported, then restart the coordinator mid-step
    await new Promise<void>((resolve, reject) => {
      const stream = client.watchJob({ jobId, afterSeq: 0 }, { deadline: Date.now() + 240_000 });
      stream.on('data', (m: { event?: JobEvent }) => {
        if (!m.event) return;
        events.push(m.event);
        if (m.event.type === JobEventType.JOB_EVENT_TYPE_PHASE && m.event.phase === Phase.PHASE_POLICY) {
          stream.cancel();
          resolve();
        }
      });
      stream.on('end', () => resolve());
      stream.on('error', (e: Error & { code?: number }) => (e.code === 1 ? resolve() : reject(e)));
    });
    await stopCoord();
    await startCoord();
    await new Promise<void>((resolve, reject) => {
      const afterSeq = events.at(-1)?.seq ?? 0;
      const stream = client.watchJob({ jobId, afterSeq }, { deadline: Date.now() + 240_000 });
      stream.on('data', (m: { event?: JobEvent }) => m.event && events.push(m.event));
      stream.on('end', () => resolve());
      stream.on('error', reject);
    });
    assert.deepEqual(
      events.map((e) => e.seq),
      events.map((_, i) => i + 1),
      'no event lost or repeated across the two watches',
    );
    const status = await new Promise<JobStatus | undefined>((resolve, reject) =>
      client.getJob({ jobId }, (err, res) => (err ? reject(err) : resolve(res.status))),
    );
    assert.equal(status?.state, JobState.JOB_STATE_SUCCEEDED, `job ended ${status?.message}`);

    // Event-driven completion: every wait starts with a result that is not there yet (the task was just
    // enqueued), so a driver that only polled would spend at least one POLL_MS per phase.
    const timed = events.filter(
      (e) => e.type === JobEventType.JOB_EVENT_TYPE_PHASE || e.type === JobEventType.JOB_EVENT_TYPE_EVAL,
    );
    const slowest = Math.max(...timed.map((e) => e.metrics['seconds.total'] ?? 0));
    t.diagnostic(`slowest phase ${slowest.toFixed(1)} s (the poll: ${POLL_MS / 1000} s)`);
    for (const e of timed) {
      const seconds = e.metrics['seconds.total'] ?? Number.NaN;
      assert.ok(
        seconds < POLL_MS / 1000,
        `${Phase[e.phase]} of step ${e.step} took ${seconds} s: results were not noticed before the ${POLL_MS} ms poll`,
      );
    }

    // the resumed step does not report its phases twice
    const phases = events.filter((e) => e.type === JobEventType.JOB_EVENT_TYPE_PHASE);
    const keys = phases.map((e) => `${e.phase}/${e.step}`);
    assert.equal(new Set(keys).size, keys.length, `a phase reported twice: ${keys.join(' ')}`);
    const of = (p: Phase) => phases.filter((e) => e.phase === p);
    assert.equal(of(Phase.PHASE_WARMUP).length, 2);
    assert.equal(of(Phase.PHASE_POLICY).length, 2);
    const rewards = of(Phase.PHASE_REWARD);
    assert.ok(rewards.length >= 1, 'the reward phase ran');
    for (const r of rewards) assert.equal(r.metrics.samples, 4 * 4, 'B released items × G');

    const evals = events.filter(
      (e, i, all) =>
        e.type === JobEventType.JOB_EVENT_TYPE_EVAL &&
        all.findIndex((x) => x.type === e.type && x.step === e.step) === i,
    );
    assert.deepEqual(
      evals.map((e) => e.step),
      [0, 2],
      'before RL and at the end',
    );
    for (const e of evals) {
      assert.equal(e.metrics.items, 40, '5 items per held-out problem, and 5 judge-diagnostic ones');
      for (const k of [
        'answer_accuracy',
        'pointwise_accuracy',
        'pairwise_accuracy',
        'reflection_accuracy',
        'pointwise_accuracy.no_first',
        'pointwise_accuracy.far',
        'yesno_yes_share',
        'judge_no_verdict',
      ])
        assert.ok((e.metrics[k] ?? -1) >= 0 && (e.metrics[k] ?? 2) <= 1, k);
    }

    // exactly-once training: one stored result per update, covering every group of its phase once
    const redis = connectRedis(url);
    try {
      // a new connection takes no commands (no offline queue) until it is ready: wait for that. A fixed
      // 50 ms stood here; without any wait the first GET failed on a loaded machine ("Stream isn't
      // writeable"). The results themselves need no wait: the learner stores each before its task
      // completes, and the job succeeded after all of them.
      await until(() => redis.status === 'ready', { message: 'the Redis connection to be ready' });
      let updates = 2; // warm-up
      // the warm-up's cosine lr reached the learner: the peak at step 0, half-way to 0.1 × peak at step 1 of 2
      const warmupLr = await Promise.all(
        [0, 1].map(async (w) => {
          const text = await redis.get(jobKeys.learned(prefix, jobId, w, 'warmup'));
          return (JSON.parse(text ?? 'null') as LearnResult | null)?.learningRate;
        }),
      );
      assert.ok(
        Math.abs((warmupLr[0] ?? 0) - 1e-3) < 1e-12 && Math.abs((warmupLr[1] ?? 0) - 5.5e-4) < 1e-12,
        JSON.stringify(warmupLr),
      );
      for (let step = 0; step < 2; step++) {
        for (const phase of ['policy', 'reward'] as const) {
          const text = await redis.get(jobKeys.learned(prefix, jobId, step, phase));
          const ran = phase === 'policy' || rewards.some((e) => e.step === step);
          assert.equal(text !== null, ran, `learned ${step}/${phase}`);
          if (!text) continue;
          const r = JSON.parse(text) as LearnResult;
          assert.equal(r.staleGroups, 0, 'no group refused');
          assert.equal(
            r.sequences + (r.skippedSequences ?? 0),
            16,
            'every group of the phase, G responses each',
          );
          updates++;
        }
      }
      assert.equal(status?.policyVersion, updates, 'one policy version per update: nothing trained twice');
    } finally {
      redis.disconnect();
    }

    const ckpt = events.filter((e) => e.type === JobEventType.JOB_EVENT_TYPE_CHECKPOINT);
    assert.ok(ckpt.length >= 1, 'a final checkpoint');
    const last = ckpt.at(-1);
    assert.equal(last?.metrics.final, 1);
    assert.ok(existsSync(join(last?.message ?? '', 'config.json')), 'checkpoint written to disk');
    const base = ckpt.find((e) => e.phase === Phase.PHASE_WARMUP);
    assert.ok(base?.message.endsWith('warmup'), 'the end of warm-up writes the `warmup` checkpoint');
    assert.ok(existsSync(join(base?.message ?? '', 'model.safetensors')));
  });

  it('a grpo-judge job whose last step has no reward phase still ends with a checkpoint', async () => {
    const spec = JobSpec.fromPartial({
      name: 'it-judge',
      model: 'tiny',
      algorithm: Algorithm.ALGORITHM_GRPO_JUDGE,
      batchSize: 4,
      groupSize: 2,
      trainSize: 8,
      maxSteps: 1, // one step: the buffer holds at most B/2 judge items, so no reward phase runs
      maxNewTokens: 16,
      evalSize: 2,
      evalInterval: 0,
      seed: 5,
    });
    const { jobId } = await new Promise<{ jobId: string }>((resolve, reject) =>
      client.submitJob({ spec }, (err, res) => (err ? reject(err) : resolve(res))),
    );
    const events: JobEvent[] = [];
    await new Promise<void>((resolve, reject) => {
      const stream = client.watchJob({ jobId, afterSeq: 0 }, { deadline: Date.now() + 120_000 });
      stream.on('data', (m: { event?: JobEvent }) => m.event && events.push(m.event));
      stream.on('end', () => resolve());
      stream.on('error', reject);
    });
    const done = events.at(-1);
    assert.equal(done?.state, JobState.JOB_STATE_SUCCEEDED, done?.message);
    const phases = events.filter((e) => e.type === JobEventType.JOB_EVENT_TYPE_PHASE);
    assert.ok(!phases.some((e) => e.phase === Phase.PHASE_REWARD), 'no reward phase ran');
    const ckpt = events.filter((e) => e.type === JobEventType.JOB_EVENT_TYPE_CHECKPOINT);
    assert.equal(ckpt.length, 1);
    assert.equal(ckpt[0]?.metrics.final, 1);
    assert.equal(ckpt[0]?.metrics.policy_version, 0, 'nothing trained, the version stays');
    assert.ok(existsSync(join(ckpt[0]?.message ?? '', 'config.json')), 'checkpoint written to disk');
  });
});
