// The deployed entry points, from their sources (`node --import tsx services/<name>/src/main.ts`; the image
// runs the same entry points compiled, `node services/<name>/src/main.js`: test/deploy/dist.test.ts),
// configured only through SPARK_* variables (as the chart's ConfigMaps set them), against a real Redis. Each must print READY, answer /healthz, expose exactly the metrics the
// catalog (and so docs/metrics.md, the dashboards and the rules) says it has, pass `promtool check
// metrics`, and exit 0 on SIGTERM.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

import { testPrefix, testRedisUrl } from '@spark/runtime/testing';

import { readMetricCatalog } from '../../deploy/lib/metric-catalog.js';

import { repoRoot, SERVICE_BLOCKS } from './chart.js';

const promtoolAvailable = spawnSync('promtool', ['--version']).status === 0;
const READY_TIMEOUT_MS = 90_000;

interface Running {
  child: ChildProcess;
  ready: { metricsPort: number; grpcPort?: number };
  output: () => string;
}

async function startService(dir: string, env: Record<string, string>): Promise<Running> {
  const child = spawn(process.execPath, ['--import', 'tsx', `services/${dir}/src/main.ts`], {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (chunk: Buffer): void => {
    out = (out + chunk.toString('utf8')).slice(-20_000);
  };
  child.stderr.on('data', keep);
  const ready = await new Promise<Running['ready']>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${dir}: no READY in ${READY_TIMEOUT_MS} ms\n${out}`)),
      READY_TIMEOUT_MS,
    );
    let buf = '';
    child.stdout.on('data', (chunk: Buffer) => {
      keep(chunk);
      buf += chunk.toString('utf8');
      const m = /^READY (\{.*\})$/m.exec(buf);
      if (m) {
        clearTimeout(timer);
        resolve(JSON.parse(m[1]!) as Running['ready']);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${dir} exited with ${code} before READY\n${out}`));
    });
  });
  return { child, ready, output: () => out };
}

async function stop(r: Running): Promise<number | null> {
  if (r.child.exitCode !== null) return r.child.exitCode;
  const exited = new Promise<number | null>((resolve) => r.child.once('exit', (code) => resolve(code)));
  r.child.kill('SIGTERM');
  const timer = setTimeout(() => r.child.kill('SIGKILL'), 30_000);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

/** `# TYPE` lines of an exposition: metric name → type, for the spark_ metrics. */
function exposedSparkMetrics(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of text.matchAll(/^# TYPE (spark_\w+) (\w+)$/gm)) out.set(m[1]!, m[2]!);
  return out;
}

describe('deployed entry points', () => {
  const running: Running[] = [];
  const dataDir = mkdtempSync(join(tmpdir(), 'spark-deploy-live-'));
  after(async () => {
    for (const r of running) await stop(r);
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('start from SPARK_* config, serve /healthz and exactly the catalogued metrics, stop on SIGTERM', async () => {
    const redisUrl = await testRedisUrl();
    const prefix = testPrefix('deploy-live');
    // What the chart's common ConfigMap and Secret set (loopback instead of 0.0.0.0, free ports).
    const common: Record<string, string> = {
      SPARK_LOG_LEVEL: 'warn',
      SPARK_LOCAL_MODE: 'true',
      SPARK_REDIS_PREFIX: prefix,
      SPARK_REDIS_URL: redisUrl,
      SPARK_GRPC_HOST: '127.0.0.1',
      SPARK_GRPC_PORT: '0',
      SPARK_METRICS_HOST: '127.0.0.1',
      SPARK_METRICS_PORT: '0',
      SPARK_SHUTDOWN_GRACE_MS: '10000',
    };
    // The chart's per-service defaults (spark.serviceDefaults), with a temporary volume.
    const perService: Record<string, Record<string, string>> = {
      coordinator: { SPARK_DATA_DIR: join(dataDir, 'jobs') },
      learner: { SPARK_DATA_DIR: dataDir },
    };
    const catalog = readMetricCatalog(repoRoot);
    assert.deepEqual(catalog.problems, []);

    const dirs = Object.values(SERVICE_BLOCKS);
    const started = await Promise.all(
      dirs.map((dir) => startService(dir, { ...common, ...(perService[dir] ?? {}) })),
    );
    running.push(...started);

    for (const [i, dir] of dirs.entries()) {
      const r = started[i]!;
      const base = `http://127.0.0.1:${r.ready.metricsPort}`;
      const health = await fetch(`${base}/healthz`, { signal: AbortSignal.timeout(10_000) });
      assert.equal(health.status, 200, `${dir} /healthz`);
      const text = await (await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();

      const exposed = exposedSparkMetrics(text);
      const expected = new Map(catalog.metrics.filter((m) => m.service === dir).map((m) => [m.name, m.type]));
      assert.deepEqual(
        [...exposed.entries()].sort(),
        [...expected.entries()].sort(),
        `${dir}: exposed metrics differ from the catalog (docs/metrics.md)`,
      );
      assert.match(text, /^# TYPE process_cpu_seconds_total counter$/m, `${dir} exports default metrics`);

      if (promtoolAvailable) {
        const lint = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
        const findings = `${lint.stdout}${lint.stderr}`.split('\n').filter((l) => l.trim());
        assert.deepEqual(findings, [], `${dir}: promtool check metrics`);
      }
    }

    for (const [i, dir] of dirs.entries()) {
      const r = started[i]!;
      assert.equal(await stop(r), 0, `${dir} exits 0 on SIGTERM\n${r.output()}`);
    }
  });
});
