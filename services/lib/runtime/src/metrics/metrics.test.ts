import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';

import { InvalidArgumentError } from '../errors/index.js';
import { metricServiceName, ServiceMetrics, startMetricsServer } from './index.js';

function promtoolAvailable(): boolean {
  return spawnSync('promtool', ['--version'], { stdio: 'ignore' }).status === 0;
}

describe('metrics', () => {
  it('names metrics spark_<service>_<thing>_<unit> and rejects bad names', () => {
    assert.equal(metricServiceName('reward-synthesis'), 'reward_synthesis');
    const m = new ServiceMetrics('reward-synthesis', { defaultMetrics: false });
    const c = m.counter({ name: 'items_total', help: 'Items made.', labelNames: ['kind'] as const });
    assert.equal((c as unknown as { name: string }).name, 'spark_reward_synthesis_items_total');
    assert.throws(() => m.counter({ name: 'items', help: 'x' }), InvalidArgumentError);
    assert.throws(() => m.gauge({ name: 'depth', help: 'x' }), /must end in a unit/);
    assert.throws(() => m.gauge({ name: 'Bad_ratio', help: 'x' }), /lower_snake_case/);
  });

  it('serves /metrics over HTTP, with default Node metrics, and passes promtool check metrics', async (t) => {
    const m = new ServiceMetrics('learner');
    const steps = m.counter({
      name: 'steps_total',
      help: 'Optimizer steps.',
      labelNames: ['phase'] as const,
    });
    steps.labels('policy').inc(3);
    m.histogram({ name: 'step_seconds', help: 'Step wall time.', buckets: [0.1, 1, 10] }).observe(0.5);
    m.gauge({
      name: 'policy_version',
      help: 'Current policy version.',
      collect() {
        this.set(42);
      },
    });
    let healthy = true;
    const server = await startMetricsServer(m.registry, { healthy: () => healthy });
    t.after(() => server.close());

    const res = await fetch(server.url);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/plain/);
    const body = await res.text();
    assert.match(body, /^spark_learner_steps_total\{phase="policy"\} 3$/m);
    assert.match(body, /^spark_learner_step_seconds_bucket\{le="1"\} 1$/m);
    assert.match(body, /^spark_learner_policy_version 42$/m);
    assert.match(body, /^process_cpu_user_seconds_total /m, 'default metrics are unprefixed');

    const health = await fetch(server.url.replace('/metrics', '/healthz'));
    assert.equal(health.status, 200);
    healthy = false;
    assert.equal((await fetch(server.url.replace('/metrics', '/healthz'))).status, 503);
    assert.equal((await fetch(server.url.replace('/metrics', '/nope'))).status, 404);

    if (!promtoolAvailable()) {
      if (process.env.CI) assert.fail('promtool is required in CI (Debian package "prometheus")');
      t.skip('promtool not installed (apt-get install prometheus)');
      return;
    }
    const check = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    assert.equal(check.status, 0, `promtool check metrics failed:\n${check.stdout}${check.stderr}`);
  });

  it('promtool rejects a bad exposition (the check can fail)', (t) => {
    if (!promtoolAvailable()) {
      t.skip('promtool not installed');
      return;
    }
    const bad = '# HELP x_total x\n# TYPE x_total counter\nx_total{a="1"} notanumber\n';
    const check = spawnSync('promtool', ['check', 'metrics'], { input: bad, encoding: 'utf8' });
    assert.notEqual(check.status, 0);
  });
});
