// JobService.UploadDataset over real gRPC (client streaming) on a real coordinator: stored content-addressed
// below the dataset root and usable as `dataset: sha256:<hex>`, idempotent, RESOURCE_EXHAUSTED beyond the
// size limit, INVALID_ARGUMENT for a wrong hash or size, a header out of place and a file with no usable
// record — nothing kept then.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { problemsFromMetadata } from '@spark/runtime';
import { clientSetup, grpc } from '@spark/runtime/grpc';
import { createLogger } from '@spark/runtime/logging';
import {
  JobServiceClient,
  JobSpec,
  type JobStatus,
  type UploadDatasetRequest,
  type UploadDatasetResponse,
} from '@spark/protocol';
import { testPrefix, testRedisUrl } from '@spark/runtime/testing';

import { coordinatorConfig, startCoordinator, type Coordinator } from './index.js';

const logger = createLogger({ service: 'coordinator-upload-test', level: 'silent' });
const top = realpathSync(mkdtempSync(join(tmpdir(), 'spark-upload-')));
const datasetDir = join(top, 'datasets');
const MAX = 64 * 1024;
const good = Buffer.from(
  Array.from({ length: 40 }, (_, i) =>
    JSON.stringify({ question: `What is ${i} + 2?`, answer: String(i + 2) }),
  ).join('\n') + '\n',
);
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

type Msg = UploadDatasetRequest['part'];

function upload(client: JobServiceClient, parts: Msg[]): Promise<UploadDatasetResponse> {
  return new Promise((resolve, reject) => {
    const stream = client.uploadDataset((err, res) => (err ? reject(err) : resolve(res)));
    for (const part of parts) stream.write({ part });
    stream.end();
  });
}

/** The header then the bytes in chunks of `chunk`. */
function partsOf(
  bytes: Buffer,
  header: Partial<{ size: number; sha256: string; format: string }> = {},
  chunk = 1000,
): Msg[] {
  const parts: Msg[] = [
    {
      $case: 'header',
      value: { size: bytes.length, sha256: sha(bytes), format: '', name: 'test.jsonl', ...header },
    },
  ];
  for (let at = 0; at < bytes.length; at += chunk)
    parts.push({ $case: 'chunk', value: bytes.subarray(at, at + chunk) });
  return parts;
}

async function failure(p: Promise<unknown>): Promise<grpc.ServiceError> {
  return p.then(
    () => assert.fail('accepted'),
    (e: grpc.ServiceError) => e,
  );
}

function tmpLeft(): string[] {
  const dir = join(datasetDir, 'uploads', 'tmp');
  return existsSync(dir) ? readdirSync(dir) : [];
}

describe('UploadDataset (client streaming over gRPC)', () => {
  let c: Coordinator;
  let client: JobServiceClient;
  before(async () => {
    c = await startCoordinator(
      coordinatorConfig({
        localMode: true,
        redisUrl: await testRedisUrl(),
        redisPrefix: testPrefix('coord-upload'),
        logLevel: 'silent',
        dataDir: join(top, 'jobs'),
        datasetDir,
        uploadMaxBytes: MAX,
        schedulePollMs: 50,
      }),
      { logger },
    );
    const setup = clientSetup({ token: null, defaultDeadlineMs: 10_000 });
    client = new JobServiceClient(`127.0.0.1:${c.grpcPort}`, setup.credentials, setup.options);
  });
  after(async () => {
    client.close();
    await c.close();
  });

  it('stores a checked dataset content-addressed, idempotently, and a spec can name it', async () => {
    const res = await upload(client, partsOf(good));
    assert.deepEqual(res, { dataset: `sha256:${sha(good)}`, records: 40, badLines: 0, existed: false });
    const stored = join(datasetDir, 'uploads', 'sha256', `${sha(good)}.jsonl`);
    assert.deepEqual(readFileSync(stored), good);
    const again = await upload(client, partsOf(good, {}, 333));
    assert.deepEqual(again, { ...res, existed: true });
    assert.deepEqual(tmpLeft(), []);

    const sub = await new Promise<{ jobId: string; status: JobStatus }>((resolve, reject) =>
      client.submitJob(
        { spec: JobSpec.fromPartial({ dataset: res.dataset, batchSize: 4, groupSize: 2, evalSize: 4 }) },
        (err, r) => (err ? reject(err) : resolve(r as { jobId: string; status: JobStatus })),
      ),
    );
    assert.equal(sub.status.spec?.dataset, stored);
  });

  it('refuses an unknown upload name in a spec', async () => {
    const err = await failure(
      new Promise((resolve, reject) =>
        client.submitJob({ spec: JobSpec.fromPartial({ dataset: `sha256:${'0'.repeat(64)}` }) }, (e, r) =>
          e ? reject(e) : resolve(r),
        ),
      ),
    );
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.match(problemsFromMetadata(err.metadata).join('\n'), /dataset: no uploaded dataset sha256:0{64}/);
  });

  it('answers RESOURCE_EXHAUSTED beyond the size limit', async () => {
    const big = Buffer.alloc(MAX + 1, 'a');
    const err = await failure(upload(client, partsOf(big)));
    assert.equal(err.code, grpc.status.RESOURCE_EXHAUSTED);
    assert.match(err.details, new RegExp(`at most ${MAX} bytes`));
    assert.deepEqual(tmpLeft(), []);
  });

  it('refuses bytes that do not match the header, a misplaced header and a file without records', async () => {
    const cases: [Msg[], RegExp][] = [
      [partsOf(good, { sha256: sha(Buffer.from('other')) }), /sha256: the bytes hash to/],
      [partsOf(good, { size: good.length + 5 }), /size: \d+ bytes arrived, \d+ were announced/],
      [partsOf(good, { size: 10 }), /size: more bytes arrived/],
      [partsOf(good).slice(1), /header: the first message must be the header/],
      [[], /header: required/],
      [partsOf(good, { format: 'csv' }), /format: must be one of/],
      [partsOf(Buffer.from('not json\n{"x": 1}\n')), /dataset: test.jsonl: cannot detect the dataset format/],
      [
        partsOf(Buffer.from('not json\n{"x": 1}\n'), { format: 'jsonl' }),
        /dataset: no usable record \(2 bad lines\); line 1: /,
      ],
    ];
    for (const [parts, why] of cases) {
      const err = await failure(upload(client, parts));
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT, `${String(why)}: ${err.message}`);
      assert.match(problemsFromMetadata(err.metadata).join('\n'), why);
    }
    assert.deepEqual(tmpLeft(), [], 'no partial file kept');
    assert.deepEqual(readdirSync(join(datasetDir, 'uploads', 'sha256')), [`${sha(good)}.jsonl`]);
  });
});
