// The Helm chart (deploy/helm/spark) checked without helm: YAML lint of values.yaml and Chart.yaml, every
// value documented, templates referencing only values that exist, balanced template blocks, the
// validations covering the impossible combinations, and every SPARK_* variable the chart sets being a real
// config key of the services it deploys.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import {
  baseEnvNames,
  chartDir,
  chartServiceDefaults,
  hasPath,
  readValues,
  repoRoot,
  SERVICE_BLOCKS,
  serviceConfigKeys,
  sparkEnvNames,
  templateFiles,
  undocumentedValues,
  valuesReferences,
  variableReferences,
} from './chart.js';

const yamllintAvailable = spawnSync('yamllint', ['--version']).status === 0;

describe('helm chart', () => {
  it(
    'values.yaml, Chart.yaml, the value sets and the rules pass yamllint',
    { skip: !yamllintAvailable && 'yamllint not installed' },
    () => {
      const r = spawnSync(
        'yamllint',
        ['--strict', '-c', join(repoRoot, 'deploy', '.yamllint.yaml'), 'values.yaml', 'Chart.yaml'],
        { cwd: chartDir, encoding: 'utf8' },
      );
      assert.equal(r.status, 0, `yamllint:\n${r.stdout}${r.stderr}`);
      const sets = spawnSync(
        'yamllint',
        [
          '--strict',
          '-c',
          join(repoRoot, 'deploy', '.yamllint.yaml'),
          join(repoRoot, 'test', 'deploy', 'values'),
        ],
        { encoding: 'utf8' },
      );
      assert.equal(sets.status, 0, `yamllint test/deploy/values:\n${sets.stdout}${sets.stderr}`);
      // The alert rules: the same rules, except long PromQL lines.
      const rules = spawnSync(
        'yamllint',
        [
          '--strict',
          '-d',
          `{extends: ${join(repoRoot, 'deploy', '.yamllint.yaml')}, rules: {line-length: disable}}`,
          join(chartDir, 'files', 'prometheus-rules.yaml'),
          join(repoRoot, 'deploy', 'prometheus'),
        ],
        { encoding: 'utf8' },
      );
      assert.equal(rules.status, 0, `yamllint rules:\n${rules.stdout}${rules.stderr}`);
    },
  );

  it('documents every value with a "# --" comment', () => {
    const text = readFileSync(join(chartDir, 'values.yaml'), 'utf8');
    assert.deepEqual(undocumentedValues(text), []);
    // The checker itself: an undocumented leaf is reported.
    assert.deepEqual(undocumentedValues('a:\n  # -- doc\n  b: 1\n  c: 2\n'), ['a.c']);
  });

  it('templates reference only values that exist', () => {
    const values = readValues();
    const bad: string[] = [];
    for (const t of templateFiles()) {
      for (const ref of valuesReferences(t.text))
        if (!hasPath(values, ref)) bad.push(`${t.name}: .Values.${ref}`);
      // $svc is always one service block: the path must exist in every one of them.
      for (const ref of variableReferences(t.text, 'svc')) {
        for (const block of Object.keys(SERVICE_BLOCKS)) {
          if (!hasPath(values[block], ref)) bad.push(`${t.name}: $svc.${ref} missing in ${block}`);
        }
      }
      for (const ref of variableReferences(t.text, 'learner')) {
        if (!hasPath(values, `learner.${ref}`)) bad.push(`${t.name}: $learner.${ref}`);
      }
      for (const ref of variableReferences(t.text, 'r')) {
        if (!hasPath(values, `redis.bundled.${ref}`)) bad.push(`${t.name}: $r.${ref} (redis.bundled)`);
      }
    }
    assert.deepEqual(bad, []);
  });

  it('lists the same services as values.yaml and services/', () => {
    const helpers = readFileSync(join(chartDir, 'templates', '_helpers.tpl'), 'utf8');
    const block = /define "spark\.services" -}}\n([\s\S]*?)\n{{- end }}/.exec(helpers)?.[1] ?? '';
    const listed = Object.fromEntries(
      [...block.matchAll(/^(\w+): \{dir: ([\w-]+), grpc: (true|false)\}$/gm)].map((m) => [m[1]!, m[2]!]),
    );
    assert.deepEqual(listed, SERVICE_BLOCKS);
    const values = readValues();
    for (const [key, dir] of Object.entries(SERVICE_BLOCKS)) {
      assert.ok(hasPath(values, key), `values.yaml has no ${key} block`);
      assert.ok(existsSync(join(repoRoot, 'services', dir, 'package.json')), `services/${dir} exists`);
    }
  });

  it('reads only chart files that exist', () => {
    const gets = templateFiles().flatMap((t) =>
      [...t.text.matchAll(/\.Files\.Get "([^"]+)"/g)].map((m) => m[1]!),
    );
    assert.ok(gets.includes('files/prometheus-rules.yaml'));
    const globs = templateFiles().flatMap((t) =>
      [...t.text.matchAll(/\.Files\.Glob "([^"]+)"/g)].map((m) => m[1]!),
    );
    assert.deepEqual(globs, ['files/dashboards/*.json']);
    assert.ok(
      readdirSync(join(chartDir, 'files', 'dashboards')).length >= 4,
      'the dashboards are in the chart',
    );
    for (const g of gets) assert.ok(existsSync(join(chartDir, g)), `chart file ${g} exists`);
  });

  it('has balanced template blocks', () => {
    for (const t of templateFiles()) {
      const opens = [...t.text.matchAll(/{{-?\s*(if|range|with|define)\b/g)].length;
      const ends = [...t.text.matchAll(/{{-?\s*end\s*-?}}/g)].length;
      assert.equal(opens, ends, `${t.name}: ${opens} blocks opened, ${ends} closed`);
    }
  });

  it('fails early on impossible values', () => {
    const text = readFileSync(join(chartDir, 'templates', 'validations.yaml'), 'utf8');
    const fails = [...text.matchAll(/fail (?:\(printf )?"spark: ([^"]+)"/g)].map((m) => m[1]!);
    for (const needle of [
      'need credentials', // no token and no mTLS outside local mode
      'learner.replicas (the learner group', // a group of no ranks, or beyond 64
      'redis.bundled.password', // password-less Redis
      'set redis.url', // no Redis at all
      'tls.secretName',
      'maxmemoryPercent', // no headroom for the AOF-rewrite fork
      'nor threads', // a native pool without a bound
      'prometheusServerAddress', // autoscaling without a metrics source
      'issuerRef.name', // a Certificate without an issuer
    ]) {
      assert.ok(
        fails.some((f) => f.includes(needle)),
        `validations.yaml fails on "${needle}"`,
      );
    }
  });

  it('tolerates the GPU taint only through gpu.tolerations (added while gpu.count ≥ 1)', () => {
    const helpers = readFileSync(join(chartDir, 'templates', '_helpers.tpl'), 'utf8');
    assert.match(helpers, /set \$res "requests" \(merge \(dict \$gpu\.resourceName \$gpus\)/);
    assert.match(helpers, /set \$res "limits" \(merge \(dict \$gpu\.resourceName \$gpus\)/);
    assert.match(helpers, /concat \$tolerations \(dig "gpu" "tolerations" \(list\) \$svc\)/);
    const values = readValues() as {
      learner: { gpu: { resourceName: string; tolerations: unknown[] }; tolerations: unknown[] };
    };
    assert.equal(values.learner.gpu.resourceName, 'nvidia.com/gpu');
    assert.ok(values.learner.gpu.tolerations.length > 0);
    assert.deepEqual(values.learner.tolerations, [], 'a CPU learner tolerates no GPU taint');
    assert.ok(hasPath(values, 'learner.nodeSelector'));
  });

  it('sets only SPARK_* variables that are config keys of every service', async () => {
    const base = baseEnvNames();
    const texts = [
      ...templateFiles().map((t) => ({ name: t.name, text: t.text })),
      { name: 'Dockerfile', text: readFileSync(join(repoRoot, 'deploy', 'docker', 'Dockerfile'), 'utf8') },
    ];
    // Variables read outside the config shapes: the native core's thread count and the CLI's address (the
    // helm test pod); each must appear, quoted, in the source that reads it.
    const readers: Record<string, [string, string]> = {
      SPARK_THREADS: [join(repoRoot, 'kernels', 'src', 'backend', 'threads.rs'), 'env::var("SPARK_THREADS")'],
      SPARK_ADDRESS: [
        join(repoRoot, 'services', 'cli', 'src', 'client', 'index.ts'),
        'process.env.SPARK_ADDRESS',
      ],
    };
    const native = new Set<string>();
    // The learner's own key set per pod (its pod IP, in the container helper's learner-only block).
    const learnerKeys = await serviceConfigKeys('learner');
    assert.ok(learnerKeys?.has('collectiveHost'), 'collectiveHost is a learner config key');
    native.add('SPARK_COLLECTIVE_HOST');
    for (const [n, [file, needle]] of Object.entries(readers)) {
      assert.ok(readFileSync(file, 'utf8').includes(needle), `${file} reads ${n} (${needle})`);
      native.add(n);
    }
    const unknown: string[] = [];
    for (const t of texts)
      for (const n of sparkEnvNames(t.text))
        if (!base.has(n) && !native.has(n)) unknown.push(`${t.name}: ${n}`);
    assert.deepEqual(unknown, []);
    // The checker itself: a misspelt key is not a config key.
    assert.equal(base.has('SPARK_REDIS_URLS'), false);
    assert.equal(base.get('SPARK_SHUTDOWN_GRACE_MS'), 'shutdownGraceMs');
  });

  it('puts only real config keys of each service in its config map', async () => {
    const values = readValues() as Record<string, { config?: Record<string, unknown> }>;
    const defaults = chartServiceDefaults();
    assert.deepEqual(Object.keys(defaults).sort(), Object.keys(SERVICE_BLOCKS).sort());
    assert.ok(defaults.learner?.includes('dataDir'), 'the learner writes checkpoints on its volume');
    const problems: string[] = [];
    for (const [block, dir] of Object.entries(SERVICE_BLOCKS)) {
      const config = {
        ...Object.fromEntries((defaults[block] ?? []).map((k) => [k, ''])),
        ...values[block]?.config,
      };
      if (Object.keys(config).length === 0) continue;
      const keys = await serviceConfigKeys(dir);
      if (!keys) {
        problems.push(`${block}.config is set but services/${dir} exports no config shape`);
        continue;
      }
      for (const k of Object.keys(config)) if (!keys.has(k)) problems.push(`${block}.config.${k}`);
    }
    assert.deepEqual(problems, []);
  });
});
