// Dashboards, alert rules and docs/metrics.md against the code: the generated files are current (no
// drift), every metric a PromQL expression names is defined by a service (or is a default Node metric or
// `up`), the dashboards follow the conventions (stable uids, `datasource` variable, `$__rate_interval`,
// units), and promtool accepts and unit-tests the rules.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { ServiceMetrics } from '@spark/runtime/metrics';
import { parse as parseYaml } from 'yaml';

import { alertExpressions, DASHBOARD_DIR, generatedFiles, readOrNull } from '../../deploy/generate.js';
import { DASHBOARDS } from '../../deploy/grafana/dashboards.js';
import { buildDashboard, dashboardExpressions, jobMatcher } from '../../deploy/grafana/grafana.js';
import { EXTERNAL_METRICS } from '../../deploy/lib/external-metrics.js';
import { parseMetricDefinitions, readMetricCatalog, seriesNames } from '../../deploy/lib/metric-catalog.js';
import { metricNamesIn, vectorSelectorsIn } from '../../deploy/lib/promql.js';

import { repoRoot } from './chart.js';

const promDir = join(repoRoot, 'deploy', 'prometheus');
const promtoolAvailable = spawnSync('promtool', ['--version']).status === 0;

/** Every series name Prometheus can see from a Spark deployment. */
async function knownSeries(): Promise<Set<string>> {
  const known = new Set<string>(EXTERNAL_METRICS.map((m) => m.name));
  const catalog = readMetricCatalog(repoRoot);
  assert.deepEqual(catalog.problems, []);
  for (const m of catalog.metrics) for (const s of seriesNames(m)) known.add(s);
  // The default prom-client metrics, exactly as a service registers them.
  const defaults = await new ServiceMetrics('probe').registry.getMetricsAsJSON();
  for (const m of defaults) {
    for (const s of seriesNames({
      name: m.name,
      type: String(m.type) === 'histogram' ? 'histogram' : 'gauge',
    }))
      known.add(s);
  }
  return known;
}

function ruleExpressions(): { alert: string; expr: string }[] {
  const doc = parseYaml(readFileSync(join(promDir, 'rules.yaml'), 'utf8')) as {
    groups: { rules: { alert?: string; record?: string; expr: string }[] }[];
  };
  return doc.groups.flatMap((g) => g.rules.map((r) => ({ alert: r.alert ?? r.record ?? '?', expr: r.expr })));
}

describe('metric catalog', () => {
  it('reads names, types, help and labels (literal and const arrays) from source', () => {
    const src = `
      const phase = ['phase'] as const;
      const m = new ServiceMetrics('learner');
      m.counter({ name: 'updates_total', help: 'Updates ' + 'applied', labelNames: phase });
      m.histogram<'le'>({ name: 'step_seconds', help: \`Step time\`, buckets: [1] });
      m.gauge({ name: dynamicName, help: 'x' });
      other.counter('not a metric spec');
    `;
    const r = parseMetricDefinitions(src, 'x.ts');
    assert.deepEqual(
      r.defs.map((d) => [d.name, d.type, d.help, d.labels]),
      [
        ['updates_total', 'counter', 'Updates applied', ['phase']],
        ['step_seconds', 'histogram', 'Step time', []],
      ],
    );
    assert.equal(r.problems.length, 1);
    assert.match(r.problems[0]!, /x\.ts:6: metric name is not a string literal/);
  });

  it('finds the services’ metrics with their service prefix', () => {
    const catalog = readMetricCatalog(repoRoot);
    assert.deepEqual(catalog.problems, []);
    for (const m of catalog.metrics) {
      assert.match(m.name, new RegExp(`^spark_${m.service.replace('-', '_')}_[a-z0-9_]+$`));
    }
    for (const service of ['coordinator', 'learner', 'verifier', 'reward-synthesis']) {
      assert.ok(
        catalog.metrics.some((m) => m.service === service),
        `no metric found for ${service}`,
      );
    }
  });
});

describe('promql metric references', () => {
  it('skips functions, labels, groupings, strings, durations and variables', () => {
    assert.deepEqual(
      metricNamesIn(
        'histogram_quantile(0.9, sum by (le, kind) (rate(spark_a_seconds_bucket{namespace=~"$namespace",x="rate(y)"}[$__rate_interval])))' +
          ' / on (kind) group_left (phase) sum without (pod) (spark_b_total offset 5m) and up == 0',
      ),
      ['spark_a_seconds_bucket', 'spark_b_total', 'up'],
    );
    assert.throws(() => metricNamesIn('rate(x[5m)'), /unbalanced/);
  });

  it('lists vector selectors with their matchers, without ranges, offsets or grouping labels', () => {
    assert.deepEqual(
      vectorSelectorsIn(
        'sum by (up) (rate(spark_a_total{job="j",x="b{c}"}[5m])) / on (kind) spark_b offset 5m' +
          ' and absent(up{job=~"a|b"}) or spark_a_total{job="j",x="b{c}"}',
      ),
      ['spark_a_total{job="j",x="b{c}"}', 'spark_b', 'up{job=~"a|b"}'],
    );
  });
});

describe('grafana dashboards', () => {
  it('are generated from deploy/grafana/dashboards.ts and docs/metrics.md from the code (no drift)', async () => {
    const files = await generatedFiles(repoRoot);
    const stale: string[] = [];
    for (const [rel, content] of files) {
      const current = readOrNull(join(repoRoot, rel));
      if (current !== content) stale.push(rel);
    }
    assert.deepEqual(stale, [], 'stale: run `node --import tsx deploy/generate.ts` and commit the result');
  });

  it('name only metrics the services define', async () => {
    const known = await knownSeries();
    const unknown: string[] = [];
    for (const spec of Object.values(DASHBOARDS)) {
      for (const expr of dashboardExpressions(buildDashboard(spec))) {
        for (const n of metricNamesIn(expr)) if (!known.has(n)) unknown.push(`${spec.uid}: ${n}`);
      }
    }
    assert.deepEqual(unknown, []);
  });

  it('follow the conventions: stable uids, datasource variable, rate interval, units', () => {
    const uids = Object.values(DASHBOARDS).map((d) => d.uid);
    assert.deepEqual(uids, ['spark-overview', 'spark-training', 'spark-processes', 'spark-infrastructure']);
    for (const [file, spec] of Object.entries(DASHBOARDS)) {
      const json = JSON.parse(readFileSync(join(repoRoot, DASHBOARD_DIR, file), 'utf8')) as {
        uid: string;
        templating: { list: { name: string; type: string }[] };
        panels: {
          type: string;
          fieldConfig?: { defaults: { unit?: string } };
          datasource?: { uid: string };
          targets?: { expr: string }[];
        }[];
      };
      assert.equal(json.uid, spec.uid);
      assert.ok(json.templating.list.some((v) => v.name === 'datasource' && v.type === 'datasource'));
      for (const p of json.panels.filter((x) => x.type !== 'row')) {
        assert.equal(p.type, 'timeseries');
        assert.ok(p.fieldConfig?.defaults.unit, 'every panel has a unit');
        assert.equal(p.datasource?.uid, '${datasource}');
        for (const t of p.targets ?? []) {
          assert.doesNotMatch(t.expr, /\[\d+[smhd]\]/, `hard-coded range in ${t.expr}`);
          if (/\brate\(|\bincrease\(/.test(t.expr)) assert.match(t.expr, /\$__rate_interval/);
        }
      }
    }
  });
});

describe('exporter metrics', () => {
  const version = 'v1.97.0';
  const dl = spawnSync('go', ['mod', 'download', '-json', `github.com/oliver006/redis_exporter@${version}`], {
    encoding: 'utf8',
    cwd: join(repoRoot, 'deploy', 'validate'),
  });
  const dir = dl.status === 0 ? (JSON.parse(dl.stdout) as { Dir?: string }).Dir : undefined;
  const why = dir ? false : `redis_exporter ${version} not downloadable with go (${dl.error ?? dl.stderr})`;
  it(
    'names only series redis_exporter (the bundled sidecar’s release) exports',
    { skip: !process.env.CI && why },
    () => {
      assert.ok(dir, String(why));
      const values = readFileSync(join(repoRoot, 'deploy', 'helm', 'spark', 'values.yaml'), 'utf8');
      assert.match(
        values,
        new RegExp(`tag: ${version.replace(/\./g, '\\.')}\n`),
        'values.yaml runs this release',
      );
      const source = readFileSync(join(dir, 'exporter', 'exporter.go'), 'utf8');
      const missing = EXTERNAL_METRICS.filter((m) => m.name.startsWith('redis_'))
        .map((m) => m.name.slice('redis_'.length))
        .filter((n) => !source.includes(`"${n}"`));
      assert.deepEqual(missing, []);
    },
  );
});

describe('dashboard scoping', () => {
  it('scope every query to the namespace and release variables, listed from Spark’s own series', () => {
    const problems: string[] = [];
    for (const spec of Object.values(DASHBOARDS)) {
      const board = buildDashboard(spec) as {
        panels: { title: string; targets?: { expr: string }[] }[];
        templating: { list: { name: string; type: string; query?: { query: string } }[] };
      };
      for (const v of board.templating.list.filter((x) => x.type === 'query')) {
        if (!/^label_values\(spark_[a-z_]+(\{[^}]*\})?, (namespace|job)\)$/.test(v.query!.query))
          problems.push(`${spec.uid} variable ${v.name}: ${v.query!.query}`);
      }
      for (const p of board.panels) {
        for (const t of p.targets ?? []) {
          // Every selector: namespace-scoped; Spark, process, up and Redis series also by the release's job.
          for (const name of metricNamesIn(t.expr)) {
            for (const m of t.expr.matchAll(new RegExp(`\\b${name}\\b(\\{[^}]*\\})?(?!\\s*\\()`, 'g'))) {
              const sel = m[1] ?? '';
              if (!sel.includes('namespace=~"$namespace"'))
                problems.push(`${spec.uid} "${p.title}": ${name} unscoped`);
              const job = jobMatcher(name);
              if (job && !sel.includes(job))
                problems.push(`${spec.uid} "${p.title}": ${name} without ${job}`);
            }
          }
        }
      }
    }
    assert.deepEqual(problems, []);
    assert.equal(jobMatcher('spark_reward_synthesis_items_total'), 'job=~"$release-reward-synthesis"');
    assert.equal(jobMatcher('up'), 'job=~"$release-(coordinator|rollout|verifier|reward-synthesis|learner)"');
  });

  it('keep versions and per-second rates on separate panels', () => {
    for (const spec of Object.values(DASHBOARDS)) {
      for (const row of spec.rows) {
        for (const p of row.panels) {
          const rates = p.queries.filter(
            (q) => /\brate\(/.test(q.expr) && !/histogram_quantile|_sum\{/.test(q.expr),
          );
          if (rates.length && rates.length !== p.queries.length)
            assert.fail(`${spec.uid} "${p.title}" mixes rates with levels`);
        }
      }
    }
  });
});

describe('prometheus rules', () => {
  it('pass promtool check rules', { skip: !promtoolAvailable && 'promtool not installed' }, () => {
    const r = spawnSync('promtool', ['check', 'rules', 'rules.yaml'], { cwd: promDir, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it('pass their promtool unit tests', { skip: !promtoolAvailable && 'promtool not installed' }, () => {
    const r = spawnSync('promtool', ['test', 'rules', 'rules.test.yaml'], { cwd: promDir, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  });

  it('name only metrics the services define', async () => {
    const known = await knownSeries();
    const rules = ruleExpressions();
    assert.ok(rules.length >= 6);
    const unknown: string[] = [];
    for (const r of rules)
      for (const n of metricNamesIn(r.expr)) if (!known.has(n)) unknown.push(`${r.alert}: ${n}`);
    assert.deepEqual(unknown, []);
    // docs/metrics.md reads the rules with a line scanner: it must see the same rules as a YAML parser.
    const scanned = alertExpressions(readFileSync(join(promDir, 'rules.yaml'), 'utf8'));
    assert.deepEqual(
      scanned.map((r) => r.alert),
      rules.map((r) => r.alert),
    );
  });

  it('aggregate by namespace and select Spark’s jobs by exact name', () => {
    const problems: string[] = [];
    for (const r of ruleExpressions()) {
      for (const m of r.expr.matchAll(/\bby \(([^)]*)\)/g))
        if (
          !m[1]!
            .split(',')
            .map((s) => s.trim())
            .includes('namespace')
        )
          problems.push(`${r.alert}: by (${m[1]})`);
      if (!/\bby \(/.test(r.expr) && !/^absent\(.*namespace="[^"]+".*\)$/.test(r.expr))
        problems.push(`${r.alert}: not aggregated by namespace`);
      // No substring job matches: job selectors are exact names (or an anchored list of exact names).
      for (const m of r.expr.matchAll(/job(=~|=)"([^"]*)"/g)) {
        if (m[1] === '=~' && !/^[a-z0-9-]+(\|[a-z0-9-]+)+$/.test(m[2]!))
          problems.push(`${r.alert}: job=~"${m[2]}"`);
      }
      for (const m of r.expr.matchAll(/\b(spark_[a-z_]+|redis_[a-z_]+|up)\{([^}]*)\}/g))
        if (!/job=/.test(m[2]!)) problems.push(`${r.alert}: ${m[1]} without a job selector`);
    }
    assert.deepEqual(problems, []);
  });

  it('have a runbook section in docs/operations.md for every alert', () => {
    const ops = readFileSync(join(repoRoot, 'docs', 'operations.md'), 'utf8');
    for (const r of ruleExpressions()) {
      assert.match(ops, new RegExp(`^### ${r.alert}$`, 'm'), `docs/operations.md has no "### ${r.alert}"`);
    }
  });
});
