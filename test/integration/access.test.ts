// The whole cluster with per-user access from a tokens file and no shared token: a researcher submits a
// short job with its own token, the rollout workers fetch the weights from the learner with the `service`
// token they are given (SPARK_AUTH_SERVICE_TOKEN), and the job trains to SUCCEEDED; another researcher
// cannot see or cancel it, an operator can see it.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { ClusterCallError } from '@spark/cli/client';
import { JobClient } from '@spark/cli/client';
import { followJob } from '@spark/cli/follow';
import { startLocalCluster, type LocalCluster } from '@spark/cli/launcher';
import { grpc } from '@spark/runtime/grpc';
import { JobSpec, JobState } from '@spark/protocol';

const TOKENS = {
  alice: 'alice-e2e-token-0123456789',
  bob: 'bob-e2e-token-0123456789ab',
  ops: 'ops-e2e-token-0123456789ab',
  rollout: 'rollout-e2e-token-0123456789',
};

const SHORT_JOB = JobSpec.fromPartial({
  name: 'access',
  model: 'tiny',
  batchSize: 4,
  groupSize: 2,
  maxSteps: 1,
  maxNewTokens: 16,
  trainSize: 64,
  evalSize: 4,
});

describe('the cluster with per-user tokens (no shared token)', () => {
  let cluster: LocalCluster;
  const clients: JobClient[] = [];
  const as = (who: keyof typeof TOKENS): JobClient => {
    const c = new JobClient({ address: cluster.coordinatorAddress, token: TOKENS[who], deadlineMs: 15_000 });
    clients.push(c);
    return c;
  };

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spark-access-'));
    const tokensFile = join(dir, 'tokens.yaml');
    writeFileSync(
      tokensFile,
      [
        'principals:',
        `  - { name: alice, roles: [researcher], tokens: ["${TOKENS.alice}"] }`,
        `  - { name: bob, roles: [researcher], tokens: ["${TOKENS.bob}"] }`,
        `  - { name: ops, roles: [operator], tokens: ["${TOKENS.ops}"] }`,
        `  - { name: rollout, roles: [service], tokens: ["${TOKENS.rollout}"] }`,
        '',
      ].join('\n'),
    );
    cluster = await startLocalCluster({
      dataDir: join(dir, 'cluster'),
      prefix: 'access',
      env: {
        SPARK_LOCAL_MODE: 'false',
        SPARK_AUTH_TOKEN: '',
        SPARK_AUTH_TOKENS_FILE: tokensFile,
        SPARK_AUTH_SERVICE_TOKEN: TOKENS.rollout,
      },
    });
  });
  after(async () => {
    for (const c of clients) c.close();
    await cluster?.stop();
  });

  it("a researcher's job trains with the service token on the weight stream; others see only what they may", async () => {
    const alice = as('alice');
    const { jobId, status } = await alice.submit(SHORT_JOB);
    assert.equal(status?.owner, 'alice');
    await assert.rejects(as('bob').cancel(jobId), (err: ClusterCallError) => {
      assert.equal(err.code, grpc.status.PERMISSION_DENIED);
      assert.match(err.message, new RegExp(`CancelJob of job ${jobId}: it is not a job of bob`));
      return true;
    });
    assert.deepEqual(await as('bob').list(), []);
    assert.deepEqual(
      (await as('ops').list()).map((j) => j.jobId),
      [jobId],
    );
    await Promise.race([
      followJob(alice, jobId, { out: null }),
      cluster.failure.then((x) => {
        throw new Error(`${x.name} died during the job (${x.signal ?? x.code}):\n${x.logTail}`);
      }),
    ]);
    const final = await alice.get(jobId);
    assert.equal(final.state, JobState.JOB_STATE_SUCCEEDED, final.message);
    assert.ok(final.policyVersion >= 1, 'one RL update was published');
  });
});
