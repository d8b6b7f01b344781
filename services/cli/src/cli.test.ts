import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
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

  it('doctor loads the native addon itself, and says why when it cannot', async () => {
    const ok = JSON.parse((await runSpark(['doctor', '--json'])).stdout) as CheckResult[];
    const addon = ok.find((x) => x.name === 'native addon');
    assert.equal(addon?.ok, true, addon?.detail);
    assert.match(
      addon?.detail ?? '',
      /^loaded \/.*spark-kernels\.[\w-]+\.node \(version \S+\); GEMM (OpenBLAS( \(\w+ kernels\))?|builtin|scalar), \d+ threads$/,
    );
    // a file that exists but is no loadable library (as an addon whose linked libraries are missing): the
    // package imports fine (it loads the binary lazily), so only loading it shows the fault
    const dir = mkdtempSync(join(tmpdir(), 'spark-doctor-'));
    try {
      const bad = join(dir, 'spark-kernels.linux-x64-gnu.node');
      writeFileSync(bad, 'not a shared object');
      const r = await runSpark(['doctor', '--json'], { SPARK_KERNELS_ADDON: bad });
      const failed = (JSON.parse(r.stdout) as CheckResult[]).find((x) => x.name === 'native addon');
      assert.equal(failed?.ok, false);
      assert.equal(failed?.required, false);
      assert.match(failed?.detail ?? '', /could not be loaded/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
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
