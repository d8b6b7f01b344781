// Job paths confined to the cluster's roots, through the real gRPC SubmitJob on a real coordinator (and a
// real Redis): a dataset or model outside the dataset and checkpoint roots is refused with INVALID_ARGUMENT
// naming the roots, with the same message whether or not the file exists; symlinks and `..` cannot leave
// the roots; a job's checkpoint directory must lie below the checkpoint root.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { problemsFromMetadata } from '@spark/runtime';
import { clientSetup, grpc } from '@spark/runtime/grpc';
import { createLogger } from '@spark/runtime/logging';
import { JobServiceClient, JobSpec, type JobStatus } from '@spark/protocol';
import { testPrefix, testRedisUrl } from '@spark/runtime/testing';

import { coordinatorConfig, startCoordinator, type Coordinator } from './index.js';

const logger = createLogger({ service: 'coordinator-paths-test', level: 'silent' });
const top = realpathSync(mkdtempSync(join(tmpdir(), 'spark-paths-')));
const datasetDir = join(top, 'datasets');
const dataDir = join(top, 'jobs');
const outside = join(top, 'outside');
const rows = Array.from({ length: 40 }, (_, i) =>
  JSON.stringify({ question: `What is ${i} + 1?`, answer: String(i + 1) }),
).join('\n');

function submit(
  client: JobServiceClient,
  spec: Partial<JobSpec>,
): Promise<{ jobId: string; status: JobStatus }> {
  return new Promise((resolve, reject) =>
    client.submitJob(
      { spec: JobSpec.fromPartial({ name: 'paths', batchSize: 4, groupSize: 2, evalSize: 4, ...spec }) },
      (err, res) => (err ? reject(err) : resolve(res as { jobId: string; status: JobStatus })),
    ),
  );
}

/** The problems of a refused submit (asserting INVALID_ARGUMENT). */
async function refused(client: JobServiceClient, spec: Partial<JobSpec>): Promise<string[]> {
  const err = await submit(client, spec).then(
    () => assert.fail(`accepted ${JSON.stringify(spec)}`),
    (e: grpc.ServiceError) => e,
  );
  assert.equal(err.code, grpc.status.INVALID_ARGUMENT, err.message);
  return problemsFromMetadata(err.metadata);
}

/** The one problem about `field`, with the offending value replaced by `<path>`. */
function problemFor(problems: string[], field: string, value: string): string {
  const mine = problems.filter((p) => p.startsWith(`${field}:`));
  assert.equal(mine.length, 1, `one ${field} problem in ${problems.join(' | ')}`);
  return (mine[0] as string).replace(`"${value}"`, '"<path>"');
}

describe('job paths confined to the dataset and checkpoint roots (SubmitJob over gRPC)', () => {
  let c: Coordinator;
  let client: JobServiceClient;
  before(async () => {
    for (const d of [datasetDir, dataDir, outside, join(dataDir, 'ckpt'), join(outside, 'ckpt')])
      mkdirSync(d, { recursive: true });
    writeFileSync(join(datasetDir, 'good.jsonl'), rows);
    writeFileSync(join(outside, 'secret.jsonl'), rows);
    writeFileSync(join(dataDir, 'ckpt', 'config.json'), '{}');
    writeFileSync(join(outside, 'ckpt', 'config.json'), '{}');
    symlinkSync(join(outside, 'secret.jsonl'), join(datasetDir, 'escape.jsonl'));
    symlinkSync(join(datasetDir, 'good.jsonl'), join(datasetDir, 'alias.jsonl'));
    symlinkSync(outside, join(dataDir, 'out-link'));
    c = await startCoordinator(
      coordinatorConfig({
        localMode: true,
        redisUrl: await testRedisUrl(),
        redisPrefix: testPrefix('coord-paths'),
        logLevel: 'silent',
        dataDir,
        datasetDir,
        schedulePollMs: 50,
        maxConcurrentJobs: 1,
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

  it('refuses a dataset outside the roots with one message naming the roots, existing or not', async () => {
    const cases = [
      '/etc/shadow',
      '/etc/no-such-file-here',
      join(outside, 'secret.jsonl'),
      join(outside, 'missing.jsonl'),
      join(datasetDir, 'escape.jsonl'), // a symlink inside the root to a file outside
      join(datasetDir, '..', 'outside', 'secret.jsonl'), // `..` out of the root
      '../outside/secret.jsonl', // relative: below the dataset root, then `..` out
      join(datasetDir, 'missing.jsonl'),
      datasetDir, // a directory
    ];
    const messages = new Set<string>();
    for (const path of cases) {
      const problems = await refused(client, { dataset: path });
      messages.add(problemFor(problems, 'dataset', path));
    }
    assert.equal(messages.size, 1, [...messages].join('\n'));
    const msg = [...messages][0] as string;
    assert.ok(msg.includes(datasetDir) && msg.includes(dataDir), `names the roots: ${msg}`);
    assert.doesNotMatch(msg, /bad lines|ENOENT|EACCES|permission/i);
  });

  it('accepts datasets below the roots, relative ones below the dataset root, as real paths', async () => {
    const good = join(datasetDir, 'good.jsonl');
    for (const [path, stored] of [
      ['good.jsonl', good],
      [good, good],
      [join(datasetDir, 'alias.jsonl'), good], // a symlink that stays inside
      [join(dataDir, 'ckpt', '..', '..', 'datasets', 'good.jsonl'), good],
    ] as const) {
      const res = await submit(client, { dataset: path });
      assert.equal(res.status.spec?.dataset, stored, path);
    }
  });

  it('refuses a model checkpoint outside the roots the same way, and accepts one inside', async () => {
    const messages = new Set<string>();
    for (const path of [
      join(outside, 'ckpt'),
      join(outside, 'nope'),
      join(dataDir, 'out-link', 'ckpt'),
      '/etc',
    ]) {
      messages.add(problemFor(await refused(client, { model: path }), 'model', path));
    }
    assert.equal(messages.size, 1, [...messages].join('\n'));
    assert.ok([...messages][0]?.includes(dataDir));
    const res = await submit(client, { model: 'ckpt' });
    assert.equal(res.status.spec?.model, join(dataDir, 'ckpt'));
  });

  it('keeps checkpointDir below the checkpoint root', async () => {
    for (const path of [
      join(outside, 'run'),
      '/tmp/anywhere',
      join(dataDir, '..', 'outside', 'run'),
      '../outside/run',
      join(dataDir, 'out-link', 'run'), // through a symlink out of the root
      dataDir, // the root itself would mix every job's checkpoints
    ]) {
      const problems = await refused(client, { checkpointDir: path });
      assert.match(problemFor(problems, 'checkpointDir', path), /below the checkpoint root/);
    }
    const res = await submit(client, { checkpointDir: 'runs/a' });
    assert.equal(res.status.spec?.checkpointDir, join(dataDir, 'runs', 'a'));
    const dflt = await submit(client, {});
    assert.equal(dflt.status.spec?.checkpointDir, join(dataDir, dflt.jobId));
  });
});
