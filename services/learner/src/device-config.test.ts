// SPARK_DEVICE: where the learner's models live ('cpu' by default, or 'cuda:N'), checked by the config schema like
// every other key, so a typo stops the service at start with the key named.
import assert from 'node:assert/strict';
import { it } from 'node:test';

import { ConfigError } from '@spark/runtime';
import { loadConfig } from '@spark/runtime/config';

import { learnerConfigShape } from './index.js';

it('SPARK_DEVICE defaults to cpu, takes cuda:N, and refuses anything else naming the key', () => {
  assert.equal(loadConfig('learner', learnerConfigShape, { env: {} }).device, 'cpu');
  assert.equal(
    loadConfig('learner', learnerConfigShape, { env: { SPARK_DEVICE: 'cuda:3' } }).device,
    'cuda:3',
  );
  for (const bad of ['gpu', 'cuda', 'cuda:01', 'cuda:1024', 'CUDA:0']) {
    assert.throws(
      () => loadConfig('learner', learnerConfigShape, { env: { SPARK_DEVICE: bad } }),
      (e: Error) =>
        e instanceof ConfigError && /device \(SPARK_DEVICE\): must be 'cpu' or 'cuda:N'/.test(e.message),
      bad,
    );
  }
});
