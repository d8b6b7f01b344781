// Exact resume and learner failover through the real services (a local cluster: Redis, coordinator,
// learner, rollout, verifier and reward-synthesis processes, CPU backend). The same small SPARK job runs
// twice with checkpointInterval 2:
//   A  without interruption;
//   B  with the learner SIGKILLed right after step 3's policy update (its last checkpoint is step-2) and
//      restarted on the same port: it resumes from step-2, the coordinator rewinds the job to step 3
//      (tasks of the abandoned steps discarded by id, the FIFO buffer restored), and the job SUCCEEDS.
// B's final checkpoint (step 6 = the killed step + 3) must be byte-identical to A's (weights and optimizer
// state): nothing that resuming
// depends on (optimizer moments and step, the lr-schedule position, data order, sampling seeds, the
// buffer) is lost. Along B's final lineage every (step, phase) is trained exactly once (one LearnResult
// each, policy versions 1..K without gaps), and an event names the abandoned updates.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { JobClient } from '@spark/cli/client';
import { followJob } from '@spark/cli/follow';
import { startLocalCluster, type LocalCluster } from '@spark/cli/launcher';
import { jobKeys, type LearnResult } from '@spark/contract';
import { Algorithm, JobSpec } from '@spark/protocol';
import { connectRedis, type Redis } from '@spark/runtime/redis';
import { until } from '@spark/runtime/testing';

const JOB = JobSpec.fromPartial({
  name: 'failover',
  model: 'tiny',
  algorithm: Algorithm.ALGORITHM_SPARK,
  seed: 11,
  trainSize: 64,
  batchSize: 4,
  groupSize: 2,
  maxSteps: 7,
  warmupSteps: 1,
  warmupBatchSize: 8,
  maxNewTokens: 16,
  miniBatchSize: 8,
  microBatchSize: 8,
  evalSize: 4,
  checkpointInterval: 2,
});
const LAST = JOB.maxSteps - 1;

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('exact resume and learner failover (real cluster)', () => {
  let cluster: LocalCluster;
  let client: JobClient;
  let redis: Redis;

  before(async () => {
    cluster = await startLocalCluster({
      dataDir: mkdtempSync(join(tmpdir(), 'spark-failover-')),
      prefix: 'failover',
      // short task locks (rollout: SPARK_LOCK_MS; the learner's: SPARK_WORKER_LOCK_MS): the killed
      // learner's update comes back in seconds
      env: { SPARK_LOCK_MS: '5000', SPARK_WORKER_LOCK_MS: '5000' },
    });
    client = new JobClient({ address: cluster.coordinatorAddress, token: null, deadlineMs: 30_000 });
    redis = connectRedis(cluster.redisUrl);
  });
  after(async () => {
    client?.close();
    redis?.disconnect();
    await cluster?.stop();
  });

  async function run(kill: boolean): Promise<{ jobId: string; results: Map<string, LearnResult> }> {
    const { jobId } = await client.submit(JOB);
    const finished = followJob(client, jobId, { out: null });
    finished.catch(() => undefined);
    if (kill) {
      await until(() => redis.exists(jobKeys.learned(cluster.prefix, jobId, 3, 'policy')), {
        timeoutMs: 240_000,
        intervalMs: 10,
        message: "step 3's policy update",
      });
      assert.equal(
        await redis.exists(jobKeys.learned(cluster.prefix, jobId, LAST, 'policy')),
        0,
        'killed before the last step',
      );
      assert.ok(cluster.kill('learner', 'SIGKILL'));
      await cluster.restart('learner');
    }
    const outcome = await Promise.race([
      finished,
      cluster.failure.then((f) => {
        throw new Error(`${f.name} died (${f.signal ?? f.code}):\n${f.logTail}`);
      }),
    ]);
    assert.equal(outcome.state, 'SUCCEEDED', outcome.status.message);
    const results = new Map<string, LearnResult>();
    for (let t = 0; t < JOB.maxSteps; t++)
      for (const phase of ['policy', 'reward', 'checkpoint'])
        for (const step of [t]) {
          const text = await redis.get(jobKeys.learned(cluster.prefix, jobId, step, phase));
          if (text) results.set(`${step}/${phase}`, JSON.parse(text) as LearnResult);
        }
    return { jobId, results };
  }

  async function finalCheckpoint(jobId: string): Promise<{ weights: string; optimizer: string }> {
    const dir = join(cluster.dataDir, 'jobs', jobId, `step-${LAST}`);
    return {
      weights: sha(await readFile(join(dir, 'model.safetensors'))),
      optimizer: sha(await readFile(join(dir, 'optimizer.safetensors'))),
    };
  }

  it('a job whose learner is SIGKILLed after step 3 (checkpoint at 2) succeeds, bit-identical to an uninterrupted run', async () => {
    const a = await run(false);
    const b = await run(true);

    // the rewind is on record, naming the abandoned update(s)
    const events = await redis.xrange(jobKeys.events(cluster.prefix, b.jobId), '-', '+');
    const rewind = events.map(([, f]) => f.join(' ')).find((e) => e.includes('rewound from step'));
    assert.ok(rewind, 'a rewind event');
    assert.match(rewind, /checkpoint of step 2/);
    assert.match(rewind, /abandoned updates: .*3\/policy/);

    // along the final lineage, every (step, phase) trained exactly once: versions 1..K, no gaps
    const versions = [...b.results.values()].map((r) => r.policyVersion).sort((x, y) => x - y);
    assert.deepEqual(
      versions,
      Array.from({ length: versions.length }, (_, i) => i + 1 + JOB.warmupSteps),
      'one version per update after warm-up',
    );
    for (const [k, r] of b.results) {
      assert.equal(r.staleGroups, 0, `${k}: stale groups`);
      assert.equal(r.sequences + (r.skippedSequences ?? 0), JOB.batchSize * JOB.groupSize, `${k}: sequences`);
    }
    // the same updates as the uninterrupted run, the same figures, the same final bytes
    assert.deepEqual([...b.results.keys()].sort(), [...a.results.keys()].sort());
    for (const [k, r] of a.results) {
      const rb = b.results.get(k) as LearnResult;
      assert.equal(rb.policyVersion, r.policyVersion, `${k}: version`);
      assert.equal(rb.loss, r.loss, `${k}: loss`);
      assert.equal(rb.gradNorm, r.gradNorm, `${k}: grad norm`);
    }
    assert.deepEqual(await finalCheckpoint(b.jobId), await finalCheckpoint(a.jobId));
    // B's checkpoints are all complete: no temporary directory left, each with its manifest
    const names = await readdir(join(cluster.dataDir, 'jobs', b.jobId));
    assert.deepEqual(
      names.filter((n) => n.startsWith('.')),
      [],
    );
    for (const n of names.filter((x) => x.startsWith('step-') || x === 'warmup'))
      assert.ok(
        (await readdir(join(cluster.dataDir, 'jobs', b.jobId, n))).includes('manifest.json'),
        `${n} has a manifest`,
      );
  });
});
