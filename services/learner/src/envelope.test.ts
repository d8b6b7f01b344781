// The leader's envelopes, pure: what a follower accepts (a heartbeat; a task with its groups and the leader's
// state, the task parsed through the contract's schema) and what it refuses, with every problem named.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { InvalidArgumentError } from '@spark/runtime';
import type { LearnTask } from '@spark/contract';

import { decodeEnvelope, encodeEnvelope, groupKey } from './group.js';

const task: LearnTask = {
  jobId: 'job-1',
  step: 3,
  phase: 'policy',
  policyVersion: 5,
  groupIds: ['3/policy/a'],
  hyper: {
    learningRate: 1e-3,
    clipEpsilon: 0.2,
    klCoefficient: 0,
    miniBatchSize: 8,
    microBatchSize: 4,
    maxGradNorm: 1,
    beta1: 0.9,
    beta2: 0.95,
    weightDecay: 0,
  },
  sft: [],
};
const leader = {
  version: 5,
  optimizerSteps: 9,
  rlOptimizerSteps: 4,
  reference: true,
  sha256: 'a'.repeat(64),
};
const bytes = (x: unknown) => Buffer.from(JSON.stringify(x));

describe('learner group envelopes', () => {
  it('round-trips a heartbeat and a task', () => {
    assert.deepEqual(decodeEnvelope(encodeEnvelope({ kind: 'ping' }), 'job-1'), { kind: 'ping' });
    const e = { kind: 'task' as const, task, groups: ['{"x":1}'], leader };
    assert.deepEqual(decodeEnvelope(encodeEnvelope(e), 'job-1'), e);
  });

  it('refuses another job, a bad task, a bad leader state and unknown kinds, naming each problem', () => {
    assert.throws(
      () => decodeEnvelope(encodeEnvelope({ kind: 'task', task, groups: [], leader }), 'job-2'),
      /task of job job-1, not job-2/,
    );
    assert.throws(
      () => decodeEnvelope(bytes({ kind: 'task', task: { ...task, step: -1 }, groups: [], leader }), 'job-1'),
      (err: unknown) => err instanceof InvalidArgumentError && /step/.test(JSON.stringify(err)),
    );
    assert.throws(
      () =>
        decodeEnvelope(
          bytes({ kind: 'task', task, groups: [], leader: { ...leader, sha256: 'zz' } }),
          'job-1',
        ),
      (err: unknown) => err instanceof InvalidArgumentError && /leader\.sha256/.test(JSON.stringify(err)),
    );
    assert.throws(() => decodeEnvelope(bytes({ kind: 'shutdown' }), 'job-1'), InvalidArgumentError);
    assert.throws(() => decodeEnvelope(Buffer.from('{not json'), 'job-1'), InvalidArgumentError);
  });

  it('keeps the group under the job’s keys', () => {
    assert.equal(groupKey('spark', 'job-1'), 'spark:job:job-1:dp');
  });
});
