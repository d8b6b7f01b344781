// The short chaos run (issue 15; the long one is `npm run chaos`): 6 SIGKILLs — one of every kind:
// rollout, verifier, reward-synthesis, learner and coordinator processes (each restarted) and the AOF
// Redis (restarted on the same port and dir) — at moments drawn from a fixed seed during a SPARK job on a
// real local cluster. The job must succeed with every invariant of test/chaos/chaos.ts holding: each
// (step, phase) trained once along the final lineage, policy versions contiguous, no recycled item
// released twice, the event stream contiguous and replayed whole by WatchJob.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { kindsFor, runChaos, table } from './chaos/chaos.js';

describe('chaos: every kind of process SIGKILLed during a job', () => {
  it('6 kills (one per kind) from seed 7: the job succeeds and every invariant holds', async () => {
    const report = await runChaos({ kills: 6, seed: 7, boundMs: 180_000 });
    const text = table(report);
    assert.deepEqual(report.violations, [], text);
    assert.equal(report.state, 'SUCCEEDED', text);
    assert.deepEqual(new Set(report.kills.map((k) => k.kind)), new Set(kindsFor(1)), text);
  });

  it('7 kills with a 2-rank learner group (leader and follower killed too) from seed 7: the job succeeds and every invariant holds', async () => {
    const report = await runChaos({ kills: 7, seed: 7, boundMs: 240_000, learnerRanks: 2 });
    const text = table(report);
    assert.deepEqual(report.violations, [], text);
    assert.equal(report.state, 'SUCCEEDED', text);
    assert.deepEqual(new Set(report.kills.map((k) => k.kind)), new Set(kindsFor(2)), text);
  });
});
