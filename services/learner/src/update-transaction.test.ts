// The update transaction on a real (tiny) native model, no Redis: rollback restores the weights, the
// optimizer state, the counters, the version, the snapshots and the reference exactly; commit keeps the
// new state and closes the transaction.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, describe, it } from 'node:test';

import { float32ToLE } from '@spark/contract';
import { JobSpec } from '@spark/protocol';
import { DEFAULT_ADAMW, Model, type ScoredSequence } from '@spark/kernels';

import { JobModel } from './job-registry.js';
import type { PolicySnapshot } from './publisher.js';
import { DEFAULT_SCHEDULE } from '@spark/method/schedule';
import { UpdateTransaction } from './update-transaction.js';

const seq: ScoredSequence = { tokens: Uint32Array.from([3, 4, 5, 6, 7, 8, 9]), promptLen: 3 };

async function trainOnce(job: JobModel): Promise<void> {
  await job.model.trainStep([[seq]], { kind: 'sft' }, { ...DEFAULT_ADAMW, lr: 1e-2 });
  job.optimizerSteps += 1;
}

function snapshotOf(job: JobModel, params: Float32Array): PolicySnapshot {
  const bytes = float32ToLE(params);
  return {
    jobId: job.jobId,
    version: job.version,
    bytes,
    sha256: createHash('sha256').update(bytes).digest('hex'),
    configJson: job.configJson,
  };
}

const jobs: JobModel[] = [];
async function newJob(): Promise<JobModel> {
  const model = await Model.create('tiny', 7);
  const job = new JobModel(
    'job-t',
    JobSpec.fromPartial({ model: 'tiny', seed: 7 }),
    model,
    DEFAULT_SCHEDULE,
    '/x',
  );
  jobs.push(job);
  // a job that has trained: non-zero AdamW moments, counters and version
  await trainOnce(job);
  job.version = 3;
  job.rlOptimizerSteps = 2;
  return job;
}
after(() => {
  for (const j of jobs) j.free();
});

describe('UpdateTransaction', () => {
  it('rollback restores weights, optimizer state, counters and version exactly (from the snapshot)', async () => {
    const job = await newJob();
    const params = await job.model.getParams();
    job.snapshots = [snapshotOf(job, params)];
    const optimizer = await job.model.getOptimizerState();
    const txn = await UpdateTransaction.begin(job);
    assert.equal(txn.fromVersion, 3);

    // what an update does: first RL update freezes a reference and resets AdamW, trains, moves on a version
    job.reference = await job.model.cloneFrozen();
    const n = job.model.numParams;
    await job.model.setOptimizerState({ m: new Float32Array(n), v: new Float32Array(n), step: 0 });
    await trainOnce(job);
    job.rlOptimizerSteps += 1;
    assert.equal(txn.advance(), 4);
    job.snapshots = [...job.snapshots, snapshotOf(job, await job.model.getParams())];
    assert.notDeepEqual(await job.model.getParams(), params, 'training changed the weights');

    await txn.rollback();
    assert.equal(txn.state, 'rolled-back');
    assert.deepEqual(await job.model.getParams(), params);
    assert.deepEqual(await job.model.getOptimizerState(), optimizer);
    assert.equal(job.version, 3);
    assert.equal(job.optimizerSteps, 1);
    assert.equal(job.rlOptimizerSteps, 2);
    assert.equal(job.reference, null, 'the reference the update froze is gone');
    assert.deepEqual(
      job.snapshots.map((s) => s.version),
      [3],
    );
    await assert.rejects(txn.rollback(), /already rolled-back/);
  });

  it('rollback restores the weights read from the model when no snapshot is held', async () => {
    const job = await newJob();
    const params = await job.model.getParams();
    const optimizer = await job.model.getOptimizerState();
    const txn = await UpdateTransaction.begin(job);
    await trainOnce(job);
    await txn.rollback();
    assert.deepEqual(await job.model.getParams(), params);
    assert.deepEqual(await job.model.getOptimizerState(), optimizer);
    assert.equal(job.optimizerSteps, 1);
    assert.equal(txn.versionAdvanced, false);
  });

  it('a reference held before the update survives its rollback', async () => {
    const job = await newJob();
    job.reference = await job.model.cloneFrozen();
    const txn = await UpdateTransaction.begin(job);
    await trainOnce(job);
    await txn.rollback();
    assert.ok(job.reference);
  });

  it('commit keeps the new state: weights, optimizer state, counters and version', async () => {
    const job = await newJob();
    const before = await job.model.getParams();
    const txn = await UpdateTransaction.begin(job);
    await trainOnce(job);
    txn.advance();
    const trained = await job.model.getParams();
    const optimizer = await job.model.getOptimizerState();
    txn.commit();
    assert.equal(txn.state, 'committed');
    assert.equal(job.version, 4);
    assert.equal(job.optimizerSteps, 2);
    assert.deepEqual(await job.model.getParams(), trained);
    assert.notDeepEqual(trained, before);
    assert.deepEqual(await job.model.getOptimizerState(), optimizer);
    assert.equal(optimizer.step, 2);
    await assert.rejects(txn.rollback(), /already committed/);
    assert.throws(() => txn.advance(), /already committed/);
    // the next update starts from the committed state
    const next = await UpdateTransaction.begin(job);
    assert.equal(next.fromVersion, 4);
    await trainOnce(job);
    await next.rollback();
    assert.deepEqual(await job.model.getParams(), trained);
    assert.equal(job.version, 4);
  });
});
