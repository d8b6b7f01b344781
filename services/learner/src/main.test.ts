// The learner process as the launcher runs it: env config, one READY line with its ports, /metrics with the
// spark_learner_* families, health over gRPC, and a clean exit 0 on SIGTERM.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { it } from 'node:test';

import { checkHealth } from '@spark/runtime/grpc';
import { testPrefix, testRedisUrl } from '@spark/runtime/testing';

const here = dirname(fileURLToPath(import.meta.url));

it('main.ts prints READY, serves /metrics and health, and exits 0 on SIGTERM', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'spark-learner-main-'));
  const child = spawn(process.execPath, ['--import', 'tsx', join(here, 'main.ts')], {
    cwd: join(here, '..'),
    env: {
      ...process.env,
      SPARK_REDIS_URL: await testRedisUrl(),
      SPARK_REDIS_PREFIX: testPrefix('learner-main'),
      SPARK_LOCAL_MODE: '1',
      SPARK_DATA_DIR: dir,
      SPARK_LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const ready = await new Promise<{ service: string; grpcPort: number; metricsPort: number }>(
      (resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no READY line within 60 s')), 60_000);
        const lines = createInterface({ input: child.stdout });
        lines.on('line', (line) => {
          if (!line.startsWith('READY ')) return;
          clearTimeout(timer);
          resolve(JSON.parse(line.slice(6)) as { service: string; grpcPort: number; metricsPort: number });
        });
        child.once('exit', (code) => reject(new Error(`learner exited with ${code} before READY`)));
      },
    );
    assert.equal(ready.service, 'learner');
    assert.ok(ready.grpcPort > 0 && ready.metricsPort > 0);
    const res = await fetch(`http://127.0.0.1:${ready.metricsPort}/metrics`);
    const text = await res.text();
    assert.match(text, /# TYPE spark_learner_updates_total counter/);
    assert.match(text, /# TYPE spark_learner_weight_bytes_sent_total counter/);
    assert.equal(
      await checkHealth(`127.0.0.1:${ready.grpcPort}`, {
        token: null,
        defaultDeadlineMs: 5_000,
        service: 'spark.v1.PolicyService',
      }),
      'SERVING',
    );
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  }
});
