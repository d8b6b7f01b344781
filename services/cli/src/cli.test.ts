import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { CheckResult } from './commands/doctor.js';
import { runSpark } from './testing.js';

describe('spark CLI', () => {
  it('prints help listing its commands', async () => {
    const r = await runSpark(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: spark/);
    assert.match(r.stdout, /doctor/);
  });

  it('rejects an unknown command with a message and a non-zero exit', async () => {
    const r = await runSpark(['frobnicate']);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /unknown command 'frobnicate'/);
  });

  it('doctor passes its required checks against real Redis, gRPC and metrics', async () => {
    const r = await runSpark(['doctor', '--json']);
    const results = JSON.parse(r.stdout) as CheckResult[];
    const byName = new Map(results.map((x) => [x.name, x]));
    for (const name of ['node', 'redis + bullmq', 'grpc', 'metrics']) {
      assert.equal(byName.get(name)?.ok, true, `${name}: ${byName.get(name)?.detail}`);
    }
    assert.match(byName.get('redis + bullmq')?.detail ?? '', /BullMQ round trip/);
    assert.match(byName.get('grpc')?.detail ?? '', /UNAUTHENTICATED/);
    // CUDA is optional: on a machine without a driver it warns, naming the missing driver library
    const cuda = byName.get('cuda');
    assert.equal(cuda?.required, false);
    assert.match(cuda?.detail ?? '', /built but not yet verified on a GPU/);
    if (cuda?.ok === false) assert.match(cuda.detail, /libcuda\.so\.1|cuInit|no device/);
    assert.equal(r.code, 0, r.stderr);
  });

  it('doctor fails (exit 1) when the configured Redis does not answer', async () => {
    const r = await runSpark(['doctor', '--json'], { REDIS_URL: 'redis://127.0.0.1:1' });
    assert.equal(r.code, 1);
    const results = JSON.parse(r.stdout) as CheckResult[];
    const redis = results.find((x) => x.name === 'redis + bullmq');
    assert.equal(redis?.ok, false);
    assert.match(redis?.detail ?? '', /no Redis answers/);
  });
});
