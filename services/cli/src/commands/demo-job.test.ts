// The demo job spec: the tuned defaults and the SPARK_DEMO_SPEC override used for tuning and comparison runs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Algorithm } from '@spark/protocol';

import { DEMO_SPEC_ENV, DemoSpecError, demoJobSpec } from './demo-job.js';

describe('demoJobSpec', () => {
  it('is the tuned demo without overrides', () => {
    const s = demoJobSpec({ env: {} });
    assert.equal(s.algorithm, Algorithm.ALGORITHM_SPARK);
    assert.deepEqual(s.taskFamilies, ['add', 'sub', 'compare', 'remainder']);
    assert.equal(s.taskMaxDifficulty, 1);
    assert.ok(s.warmupJudgeFraction !== undefined && s.warmupJudgeFraction > 0);
    assert.equal(demoJobSpec({ quick: true, env: {} }).model, 'tiny');
  });

  it('merges only the fields SPARK_DEMO_SPEC names, and the seed option last', () => {
    const env = { [DEMO_SPEC_ENV]: '{"algorithm":"ALGORITHM_GRPO","maxSteps":6,"warmupJudgeFraction":0}' };
    const s = demoJobSpec({ env, seed: 3 });
    assert.equal(s.algorithm, Algorithm.ALGORITHM_GRPO);
    assert.equal(s.maxSteps, 6);
    assert.equal(s.warmupJudgeFraction, 0);
    assert.equal(s.seed, 3);
    assert.equal(s.trainSize, demoJobSpec({ env: {} }).trainSize, 'unnamed fields keep the demo value');
  });

  it('rejects bad override text with DemoSpecError', () => {
    for (const text of ['{', '[1]', '{"nope":1}', 'x'.repeat(10_001)])
      assert.throws(() => demoJobSpec({ env: { [DEMO_SPEC_ENV]: text } }), DemoSpecError);
  });
});
