// The whole cluster with a 2-rank learner group: `startLocalCluster({ learnerRanks: 2 })` runs the leader
// (`learner`) and a follower (`learner-rank-1`) as separate processes beside the coordinator, rollout,
// verifier and reward-synthesis; a short SPARK job (warm-up, policy and reward phases) trains to SUCCEEDED,
// and both ranks took part in every update (the follower's /metrics: its policy version is the job's last,
// and it spent time in the gradient collectives). Then a follower SIGKILLed in the middle of a job and
// restarted: the job still SUCCEEDS, the group having re-formed.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { JobClient } from '@spark/cli/client';
import { followJob } from '@spark/cli/follow';
import { startLocalCluster, type LocalCluster } from '@spark/cli/launcher';
import { JobEventType, JobSpec } from '@spark/protocol';
import { until } from '@spark/runtime/testing';

const JOB = JobSpec.fromPartial({
  name: 'learner-group',
  model: 'tiny',
  batchSize: 4,
  groupSize: 4,
  maxSteps: 2,
  warmupSteps: 2,
  maxNewTokens: 16,
  trainSize: 64,
  evalSize: 4,
  miniBatchSize: 8,
  microBatchSize: 4,
});

/** One sample of a Prometheus text exposition (no labels), or null. */
function sample(text: string, name: string): number | null {
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : null;
}

describe('the cluster with a 2-rank learner group', () => {
  let cluster: LocalCluster;
  let client: JobClient;

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spark-learner-group-'));
    cluster = await startLocalCluster({ dataDir: join(dir, 'cluster'), prefix: 'dp', learnerRanks: 2 });
    client = new JobClient({ address: cluster.coordinatorAddress, token: null, deadlineMs: 30_000 });
  });
  after(async () => {
    client?.close();
    await cluster?.stop();
  });

  it('trains a SPARK job to SUCCEEDED with both ranks in every update', async () => {
    const names = cluster.children.map((c) => c.name);
    assert.ok(names.includes('learner') && names.includes('learner-rank-1'), names.join(', '));
    const { jobId } = await client.submit(JOB);
    const outcome = await Promise.race([
      followJob(client, jobId, { out: null }),
      cluster.failure.then((f) => {
        throw new Error(`${f.name} died during the job (${f.signal ?? f.code}):\n${f.logTail}`);
      }),
    ]);
    assert.equal(outcome.state, 'SUCCEEDED', outcome.status.message);
    const phases = outcome.events.filter((e) => e.type === JobEventType.JOB_EVENT_TYPE_PHASE);
    assert.ok(phases.length >= JOB.warmupSteps + JOB.maxSteps, `${phases.length} phase events`);
    const follower = cluster.children.find((c) => c.name === 'learner-rank-1');
    const leader = cluster.children.find((c) => c.name === 'learner');
    const metrics = async (port: unknown) => (await fetch(`http://127.0.0.1:${String(port)}/metrics`)).text();
    const [f, l] = await Promise.all([
      metrics(follower?.ready.metricsPort),
      metrics(leader?.ready.metricsPort),
    ]);
    const version = sample(l, 'spark_learner_policy_version');
    assert.ok(version !== null && version > 0, `leader at version ${version}`);
    assert.equal(sample(f, 'spark_learner_policy_version'), version, 'the follower holds the same version');
    assert.ok((sample(f, 'spark_learner_collective_seconds_count') ?? 0) > 0, 'the follower ran collectives');
    assert.ok((sample(f, 'spark_learner_group_formations_total') ?? 0) >= 1);
  });

  it('a follower SIGKILLed during a job and restarted: the group re-forms and the job SUCCEEDS', async () => {
    const leader = cluster.children.find((c) => c.name === 'learner');
    const leaderMetrics = async () =>
      (await fetch(`http://127.0.0.1:${String(leader?.ready.metricsPort)}/metrics`)).text();
    const formedBefore = sample(await leaderMetrics(), 'spark_learner_group_formations_total') ?? 0;
    const { jobId } = await client.submit({
      ...JOB,
      name: 'learner-group-kill',
      warmupSteps: 4,
      maxSteps: 3,
    });
    const outcome = Promise.race([
      followJob(client, jobId, { out: null }),
      cluster.failure.then((f) => {
        throw new Error(`${f.name} died during the job (${f.signal ?? f.code}):\n${f.logTail}`);
      }),
    ]);
    // a labelled counter: sum its series
    const sum = (text: string, name: string) =>
      [...text.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'gm'))].reduce(
        (n, m) => n + Number(m[1]),
        0,
      );
    const start = sum(await leaderMetrics(), 'spark_learner_updates_total');
    await until(async () => sum(await leaderMetrics(), 'spark_learner_updates_total') >= start + 2, {
      timeoutMs: 120_000,
      intervalMs: 50,
      message: 'two updates of the job',
    });
    assert.ok(cluster.kill('learner-rank-1', 'SIGKILL'));
    await cluster.restart('learner-rank-1');
    const done = await outcome;
    assert.equal(done.state, 'SUCCEEDED', done.status.message);
    const formedAfter = sample(await leaderMetrics(), 'spark_learner_group_formations_total') ?? 0;
    assert.ok(formedAfter > formedBefore, `the group re-formed (${formedBefore} → ${formedAfter})`);
  });
});
