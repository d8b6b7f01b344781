// `spark eval job:<jobId> --address` against a cluster whose checkpoints are in an object store (a real S3
// server, versitygw): a local cluster of a coordinator and a rollout worker process configured with
// SPARK_STORE_*, a tiny checkpoint published as the learner publishes it, and nothing of it on a path the
// workers were told. The results equal the in-process evaluation of the original directory record for
// record; the workers load their fetched copy; a job with no checkpoint and `job:` without --address are
// clear errors with exit 1.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { publishCheckpoint } from '@spark/contract';
import { makeTinyCheckpoint } from '@spark/method/checkpoint';
import { s3Skip, startTestS3, testPrefix, testRedisUrl, type TestS3 } from '@spark/runtime/testing';
import { runSpark, type SparkRun } from '@spark/cli/testing';
import { startLocalCluster, type LocalCluster } from '@spark/cli/launcher';

function spark(args: string[]): Promise<SparkRun> {
  return runSpark(args, {}, 180_000);
}

const FAST = ['--max-new-tokens', '40', '--batch', '2'];

describe(
  'spark eval job:<id> --address reads the checkpoint from the object store',
  { skip: s3Skip() },
  () => {
    let dir: string;
    let s3: TestS3;
    let cluster: LocalCluster;
    let learnerRoot: string;
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'spark-eval-store-'));
      s3 = await startTestS3();
      learnerRoot = join(dir, 'learner-volume', 'job-s');
      await makeTinyCheckpoint(join(learnerRoot, 'step-2'), 60);
      const store = s3.openStore('spark/');
      try {
        await publishCheckpoint(store, 'job-s', learnerRoot, 'step-2', 2);
      } finally {
        store.close();
      }
      cluster = await startLocalCluster({
        dataDir: join(dir, 'cluster'),
        redisUrl: await testRedisUrl(),
        prefix: testPrefix('eval-store'),
        services: ['coordinator', 'rollout'],
        env: {
          SPARK_LOG_LEVEL: 'warn',
          SPARK_STORE_ENDPOINT: s3.endpoint,
          SPARK_STORE_BUCKET: s3.bucket,
          SPARK_STORE_PREFIX: 'spark/',
          SPARK_STORE_ACCESS_KEY_ID: s3.accessKeyId,
          SPARK_STORE_SECRET_ACCESS_KEY: s3.secretAccessKey,
          SPARK_EVAL_CACHE_DIR: join(dir, 'worker-cache'),
        },
      });
    });
    after(async () => {
      await cluster?.stop();
      await s3?.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('gives the in-process results of the original checkpoint, from the workers fetched copy', async () => {
      const local = join(dir, 'local');
      const remote = join(dir, 'remote');
      const [a, b] = await Promise.all([
        spark(['eval', join(learnerRoot, 'step-2'), '--count', '8', '--out', local, ...FAST]),
        spark([
          'eval',
          'job:job-s',
          '--count',
          '8',
          '--out',
          remote,
          '--address',
          cluster.coordinatorAddress,
          ...FAST,
        ]),
      ]);
      assert.equal(a.code, 0, a.stderr);
      assert.equal(b.code, 0, b.stderr);
      const text = (p: string) => readFile(p, 'utf8');
      assert.equal(await text(join(remote, 'results.jsonl')), await text(join(local, 'results.jsonl')));
      const summary = JSON.parse(await text(join(remote, 'summary.json'))) as {
        generation: { prompts: number; checkpointDir: string };
      };
      assert.equal(summary.generation.prompts, 8);
      assert.equal(summary.generation.checkpointDir, join(dir, 'worker-cache', 'job-s', 'step-2'));
    });

    it('exits 1 with the reason for a job without checkpoints and for job: without --address', async () => {
      const none = await spark([
        'eval',
        'job:job-none',
        '--count',
        '2',
        '--address',
        cluster.coordinatorAddress,
      ]);
      assert.equal(none.code, 1);
      assert.match(none.stderr, /no checkpoint of job job-none in s3:\/\/spark-test\/spark\//);
      const bad = await spark([
        'eval',
        'job:job-s/../x',
        '--count',
        '2',
        '--address',
        cluster.coordinatorAddress,
      ]);
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /checkpoint: checkpoint "job:job-s\/\.\.\/x": must be job:<jobId>/);
      const noAddress = await spark(['eval', 'job:job-s', '--count', '2']);
      assert.equal(noAddress.code, 1);
      assert.match(noAddress.stderr, /names a checkpoint in a cluster's object store; pass --address/);
    });
  },
);
