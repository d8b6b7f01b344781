// The learner group's shape from config: world size 1 is the single learner; the rank comes from
// SPARK_LEARNER_RANK or a StatefulSet pod's hostname ordinal; every inconsistency is a ConfigError.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { ConfigError } from '@spark/runtime';
import { loadConfig } from '@spark/runtime/config';

import { learnerConfigShape } from './index.js';
import { resolveRank } from './ranks.js';

const load = (env: Record<string, string>) => loadConfig('learner', learnerConfigShape, { env });

describe('learner ranks', () => {
  it('defaults to one rank: the single learner', () => {
    const c = load({});
    assert.equal(c.learnerRanks, 1);
    assert.equal(c.learnerZero, false);
    assert.deepEqual(resolveRank(c, 'spark-learner-3'), { rank: 0, worldSize: 1, source: 'single' });
  });

  it('reads SPARK_LEARNER_RANKS / SPARK_LEARNER_RANK / SPARK_LEARNER_ZERO', () => {
    const c = load({ SPARK_LEARNER_RANKS: '4', SPARK_LEARNER_RANK: '2', SPARK_LEARNER_ZERO: '1' });
    assert.equal(c.learnerZero, true);
    assert.deepEqual(resolveRank(c, 'whatever'), { rank: 2, worldSize: 4, source: 'config' });
  });

  it('derives the rank from a StatefulSet ordinal', () => {
    const c = load({ SPARK_LEARNER_RANKS: '2' });
    assert.deepEqual(resolveRank(c, 'spark-learner-1'), { rank: 1, worldSize: 2, source: 'hostname' });
    assert.deepEqual(resolveRank(c, 'spark-learner-0'), { rank: 0, worldSize: 2, source: 'hostname' });
  });

  it('rejects a rank outside the group, a hostname without an ordinal, and bad values', () => {
    assert.throws(
      () => resolveRank(load({ SPARK_LEARNER_RANKS: '2' }), 'spark-learner-2'),
      (err: unknown) =>
        err instanceof ConfigError &&
        /rank 2 \(from hostname "spark-learner-2"\) is outside a group of 2/.test(err.message),
    );
    assert.throws(
      () => resolveRank(load({ SPARK_LEARNER_RANKS: '2', SPARK_LEARNER_RANK: '5' }), 'x'),
      /rank 5 is outside a group of 2/,
    );
    assert.throws(() => resolveRank(load({ SPARK_LEARNER_RANKS: '3' }), 'laptop'), /no StatefulSet ordinal/);
    assert.throws(() => load({ SPARK_LEARNER_RANKS: '0' }), /learnerRanks \(SPARK_LEARNER_RANKS\)/);
    assert.throws(() => load({ SPARK_LEARNER_RANK: 'two' }), /SPARK_LEARNER_RANK/);
    assert.throws(() => load({ SPARK_COLLECTIVE_TIMEOUT_MS: '5' }), /SPARK_COLLECTIVE_TIMEOUT_MS/);
  });
});
