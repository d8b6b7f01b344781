// The client commands' behaviour that needs no cluster: local spec rejection and an unreachable address.
// Round trips against real services are in launcher.test.ts (they start a local cluster).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { freePort } from '@spark/runtime/redis';

import { runSpark } from '../testing.js';
import { intOption, serviceList } from './up.js';

describe('spark submit / jobs / watch / cancel without a cluster', () => {
  const dir = mkdtempSync(join(tmpdir(), 'spark-cli-'));

  it('submit rejects a bad spec locally, listing every problem, exit 1', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'batchSize: -3\nalgorithm: ppo\nlearning_rate: fast\ncolour: blue\n');
    const r = await runSpark(['submit', file, '--address', '127.0.0.1:1']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /invalid job spec/);
    assert.match(r.stderr, /unknown key: colour/);
    assert.match(r.stderr, /batchSize: expected a whole number/);
    assert.match(r.stderr, /algorithm: expected one of spark, grpo, grpo-judge/);
    assert.match(r.stderr, /learning_rate: expected a number/);
  });

  it('a cluster that is not there is reported as unreachable, with a hint', async () => {
    const port = await freePort();
    const r = await runSpark(['jobs', '--address', `127.0.0.1:${port}`, '--deadline', '3000']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`cannot reach the Spark cluster at 127.0.0.1:${port}`));
    assert.match(r.stderr, /spark up/);
  });

  it('without any address the commands say how to give one', async () => {
    const r = await runSpark(['cancel', 'abc', '--data-dir', join(dir, 'none')]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no cluster address: pass --address/);
  });

  it('rejects a malformed address and a bad deadline', async () => {
    assert.match((await runSpark(['watch', 'x', '--address', 'nohostport'])).stderr, /must be HOST:PORT/);
    assert.match(
      (await runSpark(['jobs', '--address', 'h:1', '--deadline', 'soon'])).stderr,
      /--deadline must be/,
    );
  });
});

describe('spark up option parsing', () => {
  it('bounds counts and checks service names', () => {
    assert.equal(intOption(1, 16)('4'), 4);
    for (const bad of ['0', '17', '2.5', 'x', ''])
      assert.throws(() => intOption(1, 16)(bad), /whole number from 1 to 16/);
    assert.deepEqual(serviceList('rollout, verifier'), ['rollout', 'verifier']);
    assert.throws(() => serviceList('rollout,frobnicator'), /unknown: frobnicator/);
  });
});
