// Generate tasks that name a checkpoint in the object store (`job:<jobId>`, `job:<jobId>/<dir>`), answered
// by the rollout worker's evaluation generators from a real S3 server (versitygw): the checkpoint is
// published as the learner publishes it (publishCheckpoint), fetched into the local cache, and gives the
// same greedy outputs as the original directory; `job:<id>` follows latest.json; missing checkpoints are
// not-found results, and workers without a store refuse such names with a clear message.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { publishCheckpoint, type GenerateTaskResult } from '@spark/contract';
import { Model } from '@spark/kernels';
import { loadGenerator } from '@spark/method/checkpoint';
import type { S3ObjectStore } from '@spark/runtime/storage';
import { s3Skip, startTestS3, type TestS3 } from '@spark/runtime/testing';

import { CheckpointGenerators, parseGenerateTask } from './eval-generate.js';

const ok = (r: GenerateTaskResult) => {
  assert.ok(!('error' in r), JSON.stringify(r));
  return r;
};
const failed = (r: GenerateTaskResult) => {
  assert.ok('error' in r, `an error result: ${JSON.stringify(r)}`);
  return r.error;
};

describe('Generate from checkpoints in the object store', { skip: s3Skip() }, () => {
  let s3: TestS3;
  let store: S3ObjectStore;
  let dir: string;
  const prompts = ['1+2=?', '9-4=?'];
  const greedy = async (path: string) => {
    const g = await loadGenerator(path, { maxNewTokens: 10, batch: 8 });
    try {
      return await g.generate(prompts);
    } finally {
      g.close();
    }
  };

  before(async () => {
    s3 = await startTestS3();
    store = s3.openStore('spark/');
    dir = await mkdtemp(join(tmpdir(), 'spark-evalstore-'));
    // the learner's layout: <root>/<name>/ per checkpoint, published after writing
    for (const [name, seed] of [
      ['step-3', 3],
      ['step-4', 4],
    ] as const) {
      const m = await Model.create('tiny', seed);
      await m.save(join(dir, 'job-a', name));
      m.free();
    }
    await publishCheckpoint(store, 'job-a', join(dir, 'job-a'), 'step-3', 3);
  });
  after(async () => {
    store?.close();
    await s3?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('accepts job: names and refuses malformed ones at parse time', () => {
    assert.equal(
      typeof parseGenerateTask({ checkpoint: 'job:job-a', prompts, maxNewTokens: 4, tokenizer: '' }),
      'object',
    );
    for (const bad of ['job:../etc', 'job:job-a/../../x', 'job:', 'relative/dir'])
      assert.equal(
        typeof parseGenerateTask({ checkpoint: bad, prompts, maxNewTokens: 4, tokenizer: '' }),
        'string',
        bad,
      );
  });

  it('fetches the latest checkpoint, then follows latest.json to a newer one, with the same outputs', async () => {
    const cacheDir = join(dir, 'cache');
    const gens = new CheckpointGenerators({ maxEntries: 2, idleMs: 60_000, store, cacheDir });
    try {
      const task = { checkpoint: 'job:job-a', prompts, maxNewTokens: 10, tokenizer: '' };
      const r3 = ok(await gens.run(task));
      assert.equal(r3.checkpointDir, join(cacheDir, 'job-a', 'step-3'));
      assert.deepEqual(r3.outputs, await greedy(join(dir, 'job-a', 'step-3')));

      await publishCheckpoint(store, 'job-a', join(dir, 'job-a'), 'step-4', 4);
      const r4 = ok(await gens.run(task));
      assert.equal(r4.checkpointDir, join(cacheDir, 'job-a', 'step-4'));
      assert.deepEqual(r4.outputs, await greedy(join(dir, 'job-a', 'step-4')));

      const named = ok(await gens.run({ ...task, checkpoint: 'job:job-a/step-3' }));
      assert.deepEqual(named.outputs, r3.outputs);
    } finally {
      gens.close();
    }
  });

  it('answers not-found for a missing job or directory, and refuses job: names without a store', async () => {
    const gens = new CheckpointGenerators({
      maxEntries: 1,
      idleMs: 60_000,
      store,
      cacheDir: join(dir, 'c2'),
    });
    try {
      const base = { prompts, maxNewTokens: 4, tokenizer: '' };
      const e1 = failed(await gens.run({ ...base, checkpoint: 'job:job-none' }));
      assert.equal(e1.code, 'not-found');
      assert.match(e1.message, /no checkpoint of job job-none in s3:\/\/spark-test\/spark\//);
      const e2 = failed(await gens.run({ ...base, checkpoint: 'job:job-a/step-9' }));
      assert.equal(e2.code, 'not-found');
      assert.equal(existsSync(join(dir, 'c2', 'job-a', 'step-9')), false);
    } finally {
      gens.close();
    }
    const bare = new CheckpointGenerators({ maxEntries: 1, idleMs: 60_000 });
    const e3 = failed(await bare.run({ prompts, maxNewTokens: 4, tokenizer: '', checkpoint: 'job:job-a' }));
    assert.equal(e3.code, 'invalid-argument');
    assert.match(e3.message, /no object store \(SPARK_STORE_BUCKET\)/);
    bare.close();
  });
});
