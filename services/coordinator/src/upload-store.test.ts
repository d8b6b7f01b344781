// Uploaded datasets kept in the object store too (a real S3 server, versitygw): an upload lands in the
// bucket; a coordinator whose dataset root lost the file fetches it back when a spec names it (SubmitJob)
// and when a recovered running job's driver needs it.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { clientSetup } from '@spark/runtime/grpc';
import { createLogger } from '@spark/runtime/logging';
import {
  JobServiceClient,
  JobSpec,
  JobState,
  type JobStatus,
  type UploadDatasetResponse,
} from '@spark/protocol';
import { s3Skip, startTestS3, testPrefix, testRedisUrl, until, type TestS3 } from '@spark/runtime/testing';

import { coordinatorConfig, startCoordinator, type Coordinator } from './index.js';

const logger = createLogger({ service: 'coordinator-upload-store-test', level: 'silent' });
const top = realpathSync(mkdtempSync(join(tmpdir(), 'spark-upload-store-')));
const rows = Buffer.from(
  `${Array.from({ length: 40 }, (_, i) => JSON.stringify({ question: `${i} * 2 = ?`, answer: String(i * 2) })).join('\n')}\n`,
);
const hex = createHash('sha256').update(rows).digest('hex');

describe('uploaded datasets in the object store', { skip: s3Skip() }, () => {
  let s3: TestS3;
  let prefix: string;
  let redisUrl: string;
  const running: { c: Coordinator; client: JobServiceClient }[] = [];

  const start = async (datasetDir: string) => {
    const c = await startCoordinator(
      coordinatorConfig({
        localMode: true,
        redisUrl,
        redisPrefix: prefix,
        logLevel: 'silent',
        dataDir: join(top, 'jobs'),
        datasetDir,
        schedulePollMs: 50,
        storeEndpoint: s3.endpoint,
        storeBucket: s3.bucket,
        storeAccessKeyId: s3.accessKeyId,
        storeSecretAccessKey: s3.secretAccessKey,
      }),
      { logger },
    );
    const setup = clientSetup({ token: null, defaultDeadlineMs: 10_000 });
    const client = new JobServiceClient(`127.0.0.1:${c.grpcPort}`, setup.credentials, setup.options);
    running.push({ c, client });
    return { c, client };
  };
  const stop = async () => {
    const r = running.pop();
    r?.client.close();
    await r?.c.close();
  };

  before(async () => {
    s3 = await startTestS3();
    prefix = testPrefix('coord-upload-store');
    redisUrl = await testRedisUrl();
  });
  after(async () => {
    while (running.length) await stop();
    await s3?.stop();
  });

  it('keeps the upload in the bucket and fetches it back for a submit and for a recovered job', async () => {
    const { client } = await start(join(top, 'd1'));
    const res = await new Promise<UploadDatasetResponse>((resolve, reject) => {
      const stream = client.uploadDataset((err, r) => (err ? reject(err) : resolve(r)));
      stream.write({
        part: { $case: 'header', value: { size: rows.length, sha256: hex, format: '', name: 'r.jsonl' } },
      });
      stream.write({ part: { $case: 'chunk', value: rows } });
      stream.end();
    });
    assert.equal(res.dataset, `sha256:${hex}`);
    const store = s3.openStore('');
    try {
      assert.ok(
        (await store.getBytes(`datasets/sha256/${hex}.jsonl`, 1 << 20))?.equals(rows),
        'in the bucket',
      );
    } finally {
      store.close();
    }
    await stop();

    // a coordinator with an empty dataset root: the spec's upload is fetched back before the check
    const d2 = join(top, 'd2');
    const b = await start(d2);
    const stored = join(d2, 'uploads', 'sha256', `${hex}.jsonl`);
    const sub = await new Promise<{ jobId: string; status: JobStatus }>((resolve, reject) =>
      b.client.submitJob(
        { spec: JobSpec.fromPartial({ dataset: res.dataset, batchSize: 4, groupSize: 2, evalSize: 4 }) },
        (err, r) => (err ? reject(err) : resolve(r as { jobId: string; status: JobStatus })),
      ),
    );
    assert.equal(sub.status.spec?.dataset, stored);
    assert.ok(readFileSync(stored).equals(rows));
    await until(
      () =>
        new Promise<boolean>((resolve) =>
          b.client.getJob({ jobId: sub.jobId }, (err, r) =>
            resolve(!err && r?.status?.state === JobState.JOB_STATE_RUNNING),
          ),
        ),
      { message: 'the job to run' },
    );
    await stop();

    // the file is lost again; the recovered job's driver fetches it back before reading it
    rmSync(stored);
    await start(d2);
    await until(() => existsSync(stored), { message: 'the driver to restore the dataset' });
    assert.ok(readFileSync(stored).equals(rows));
  });
});
