// The dashboards and alert rules against a real Prometheus scraping a real local cluster. The local launcher
// (`startLocalCluster`, as `spark up` and the e2e test) starts the five services; Debian's Prometheus
// scrapes each one's /metrics every second with the labels the chart's ServiceMonitor gives a target on
// Kubernetes (job = the Service name `spark-<component>`, namespace `spark`, pod, container, service,
// endpoint), i.e. release `spark` in namespace `spark`, the context deploy/prometheus/rules.yaml is rendered
// for. redis_exporter (the chart's sidecar release, built by .ci/run into .tools/bin from the Go module
// proxy) scrapes the cluster's Redis (with a maxmemory, 256 MiB, as the chart gives its Redis one) and Prometheus scrapes it as the
// ServiceMonitor scrapes the sidecar (job `spark-redis`, pod `spark-redis-0`, container `metrics`). A tiny
// SPARK job (warm-up, policy and reward phases) runs to its end, then:
//
//   - Grafana's template variables, evaluated the way the dashboards define them (label_values queries and
//     the release variable's regex), resolve to namespace `spark` and release `spark`;
//   - every dashboard query, with those values and `$__rate_interval` = 1m, evaluates and returns at least
//     one series, and so does every vector selector in it: except queries over exporters' metrics that do
//     not run here (kube-state-metrics, kubelet, DCGM: listed as not checked) and
//     selectors of event-only series (errors, refusals, poison tasks: no series on a healthy run), whose
//     metric must then be in the scraped target's metadata (name and job right, Prometheus saw its TYPE);
//   - every alert expression of deploy/prometheus/rules.yaml evaluates; each of its vector selectors
//     returns series (same exceptions); each operand of a top-level and/or/unless with its final
//     comparison stripped returns series that carry the `namespace` label the alert groups by; and the
//     alerts that must be quiet on a healthy cluster (SparkServiceDown, SparkServiceDegraded,
//     SparkCoordinatorAbsent, SparkLearnerAbsent, and with redis_exporter the four Redis alerts) return no series;
//   - every Redis panel query returns series, and every Redis alert (SparkRedisDown, SparkRedisMemoryHigh,
//     SparkRedisMemoryCritical, SparkRedisRejectedConnections) has its selectors and compared operands
//     checked and is quiet. Without the binary this test skips with the build command, and fails under
//     CI=true; the other tests then leave the Redis series out as they do the other exporters'.
//
// Not checked, because what exports them cannot run here (no Kubernetes, no GPU): kube-state-metrics'
// series (panels Container restarts and Last termination: OOM-killed; alerts SparkPodRestarting and
// SparkContainerOOMKilled), the kubelet's volume stats (panel Volume used; alert SparkVolumeFillingUp) and the
// DCGM exporter's (panels GPU utilisation, GPU memory used, GPU power). Only their names are checked, against
// deploy/lib/external-metrics.ts; whether those exporters give the series the labels the queries select
// (namespace, pod, persistentvolumeclaim, reason) and whether the queries then return series is not.
//
// A query naming a misspelt metric or a wrong job fails the same checks (the last test).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { JobClient } from '@spark/cli/client';
import { followJob } from '@spark/cli/follow';
import { startLocalCluster, type LocalCluster } from '@spark/cli/launcher';
import { generateTasks } from '@spark/method/tasks';
import { Algorithm, JobSpec } from '@spark/protocol';
import { connectRedis, freePort } from '@spark/runtime/redis';
import { until } from '@spark/runtime/testing';
import { parse } from 'yaml';

import { EXTERNAL_METRICS } from '../../deploy/lib/external-metrics.js';
import { metricNamesIn, vectorSelectorsIn } from '../../deploy/lib/promql.js';

import { repoRoot } from './chart.js';
import {
  prometheusAvailable,
  startPrometheus,
  type RunningPrometheus,
  type ScrapeTarget,
} from './prometheus.js';

const NAMESPACE = 'spark';
const RELEASE = 'spark';
/** Grafana's `$__rate_interval` for a data source with the default 15 s scrape interval (4 × 15 s). */
const RATE_INTERVAL = '1m';

/**
 * redis_exporter, the chart's sidecar release (redis.bundled.metrics.image.tag), built by .ci/run from the Go
 * module proxy into .tools/bin with its version in .tools/bin/.redis_exporter-version (its `--version` says
 * nothing useful: `go install` does not stamp it).
 */
const REDIS_EXPORTER_BIN =
  process.env.SPARK_REDIS_EXPORTER_BIN ?? join(repoRoot, '.tools', 'bin', 'redis_exporter');
const REDIS_EXPORTER_STAMP = join(repoRoot, '.tools', 'bin', '.redis_exporter-version');
const CHART_REDIS_EXPORTER = (
  parse(readFileSync(join(repoRoot, 'deploy', 'helm', 'spark', 'values.yaml'), 'utf8')) as {
    redis: { bundled: { metrics: { image: { tag: string } } } };
  }
).redis.bundled.metrics.image.tag;
const redisExporterAvailable = spawnSync(REDIS_EXPORTER_BIN, ['--version']).status === 0;
const noRedisExporter =
  `redis_exporter is not built (${REDIS_EXPORTER_BIN}): GOBIN="$PWD/.tools/bin" go install ` +
  `github.com/oliver006/redis_exporter@${CHART_REDIS_EXPORTER} (as .ci/run does), or set SPARK_REDIS_EXPORTER_BIN`;
/** The bundled Redis's Service (the ServiceMonitor's job for the sidecar's port `metrics`). */
const REDIS_JOB = `${RELEASE}-redis`;
const isRedisMetric = (name: string) => name.startsWith('redis_');

/**
 * Exporters' metrics that no process here exports (`up` is Prometheus's own and is checked): kube-state-metrics,
 * kubelet and DCGM always (no Kubernetes, no GPU here), redis_exporter's when its binary is missing.
 */
const EXTERNAL = new Set(
  EXTERNAL_METRICS.map((m) => m.name).filter(
    (n) => n !== 'up' && !(redisExporterAvailable && isRedisMetric(n)),
  ),
);
/** Series that only exist once something goes wrong: metric → the label whose values name the event. */
const EVENT_ONLY: Record<string, string> = {
  spark_coordinator_errors_total: 'reason',
  spark_rollout_version_refusals_total: 'reason',
  spark_rollout_eval_errors_total: 'code',
  spark_verifier_tasks_total: 'outcome="poison"',
  spark_learner_weight_streams_total: 'outcome="error"',
  // A correct answer: the untrained tiny model of a two-step warm-up rarely gives one.
  spark_verifier_responses_verified_total: 'result="correct"',
};
/** Alerts whose expression returns nothing on a healthy cluster. */
const QUIET = ['SparkServiceDown', 'SparkServiceDegraded', 'SparkCoordinatorAbsent', 'SparkLearnerAbsent'];
/** The Redis alerts (group spark.redis): quiet on a healthy cluster with a Redis far below maxmemory. */
const REDIS_QUIET = [
  'SparkRedisDown',
  'SparkRedisMemoryHigh',
  'SparkRedisMemoryCritical',
  'SparkRedisRejectedConnections',
];
if (redisExporterAvailable) QUIET.push(...REDIS_QUIET);

/** What checkSelector returns for an exporter's selector. */
const SKIPPED = Symbol('not checked: an exporter that does not run here');

/** Whether a selector is event-only: its metric is listed and (for a value-matcher entry) it has that matcher. */
function eventOnly(selector: string): boolean {
  const name = /^[A-Za-z_:][\w:]*/.exec(selector)![0];
  const what = EVENT_ONLY[name];
  if (!what) return false;
  return what.includes('=') ? selector.includes(what) : true;
}

/** The job label a selector pins (exact or a single-name regex), for the metadata look-up. */
function selectorJob(selector: string): string | null {
  return /job=~?"([\w-]+)"/.exec(selector)?.[1] ?? null;
}

export interface Finding {
  expr: string;
  problem: string;
}

/**
 * Checks one vector selector: it returns series, or (event-only) the scraped target of its job exposes the
 * metric's metadata. External exporters' selectors are not checked (returns 'skipped').
 */
async function checkSelector(
  prom: RunningPrometheus,
  selector: string,
): Promise<string | null | typeof SKIPPED> {
  const name = /^[A-Za-z_:][\w:]*/.exec(selector)![0];
  // The bundled Redis's exporter sidecar (job `<release>-redis`) runs here only when its binary is built.
  if (EXTERNAL.has(name) || (!redisExporterAvailable && selectorJob(selector) === REDIS_JOB)) return SKIPPED;
  const series = await prom.query(selector);
  if (series.length > 0) return null;
  if (!eventOnly(selector)) return `selector ${selector} returns no series`;
  const job = selectorJob(selector);
  const meta = await prom.api<unknown[]>('/api/v1/targets/metadata', {
    metric: name,
    ...(job ? { match_target: `{job="${job}"}` } : {}),
  });
  return meta.length > 0 ? null : `event-only ${name}: no target${job ? ` of job ${job}` : ''} exposes it`;
}

/**
 * A dashboard query: it evaluates, each of its selectors passes `checkSelector`, and it returns series
 * unless one of its selectors is event-only or external. Returns the problems (empty: passes).
 */
export async function checkDashboardQuery(prom: RunningPrometheus, expr: string): Promise<Finding[]> {
  const out: Finding[] = [];
  let series: number;
  try {
    series = (await prom.query(expr)).length;
  } catch (err) {
    return [{ expr, problem: (err as Error).message }];
  }
  let excused = false;
  for (const sel of vectorSelectorsIn(expr)) {
    const r = await checkSelector(prom, sel);
    if (r === SKIPPED || eventOnly(sel)) excused = true;
    if (r && r !== SKIPPED) out.push({ expr, problem: r });
  }
  if (series === 0 && !excused && out.length === 0) out.push({ expr, problem: 'returns no series' });
  return out;
}

/** Splits `expr` at its top-level `and`/`or`/`unless` (with `on`/`ignoring (…)`), then cuts each operand at its
 * first top-level comparison: the sub-expressions an alert compares. */
export function comparedOperands(expr: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  let cutAt: number | null = null;
  const push = (end: number) => parts.push(expr.slice(start, cutAt ?? end).trim());
  for (let i = 0; i < expr.length; i++) {
    const c = expr[i]!;
    if (c === '"') {
      i = expr.indexOf('"', i + 1);
      continue;
    }
    if (c === '{' || c === '[') {
      i = expr.indexOf(c === '{' ? '}' : ']', i);
      continue;
    }
    if (c === '(') depth++;
    else if (c === ')') depth--;
    if (depth !== 0) continue;
    const bin = /^(and|or|unless)\b(\s+(on|ignoring)\s*\([^)]*\))?/.exec(expr.slice(i));
    if (bin && i > 0 && /[\s)]/.test(expr[i - 1]!)) {
      push(i);
      i += bin[0].length - 1;
      start = i + 1;
      cutAt = null;
      continue;
    }
    if (cutAt === null && /^(==|!=|>=|<=|>|<)/.test(expr.slice(i))) cutAt = i;
  }
  push(expr.length);
  return parts.filter((p) => p.length > 0);
}

interface Rule {
  alert: string;
  expr: string;
}

function alertRules(): Rule[] {
  const doc = parse(readFileSync(join(repoRoot, 'deploy', 'prometheus', 'rules.yaml'), 'utf8')) as {
    groups: { rules: Rule[] }[];
  };
  return doc.groups.flatMap((g) => g.rules);
}

/** How far an alert was checked (for the test's summary line). */
const alertCoverage = new Map<string, 'operands' | 'selectors' | 'exporters only'>();

export async function checkAlert(prom: RunningPrometheus, rule: Rule): Promise<Finding[]> {
  const out: Finding[] = [];
  const expr = rule.expr.trim();
  let firing: number;
  try {
    firing = (await prom.query(expr)).length;
  } catch (err) {
    return [{ expr, problem: `${rule.alert}: ${(err as Error).message}` }];
  }
  if (QUIET.includes(rule.alert) && firing > 0)
    out.push({ expr, problem: `${rule.alert} fires on a healthy cluster` });
  let excused = false;
  let skipped = 0;
  const selectors = vectorSelectorsIn(expr);
  for (const sel of selectors) {
    const r = await checkSelector(prom, sel);
    if (r === SKIPPED || eventOnly(sel)) excused = true;
    if (r === SKIPPED) skipped++;
    if (r && r !== SKIPPED) out.push({ expr, problem: `${rule.alert}: ${r}` });
  }
  alertCoverage.set(rule.alert, skipped === selectors.length ? 'exporters only' : 'selectors');
  if (excused || expr.startsWith('absent(')) return out;
  alertCoverage.set(rule.alert, 'operands');
  for (const operand of comparedOperands(expr)) {
    const series = await prom.query(operand);
    if (series.length === 0)
      out.push({ expr, problem: `${rule.alert}: operand ${operand} returns no series` });
    for (const s of series)
      if (s.metric.namespace !== NAMESPACE)
        out.push({
          expr,
          problem: `${rule.alert}: operand ${operand} has no namespace="${NAMESPACE}" label`,
        });
  }
  return out;
}

interface Dashboard {
  title: string;
  panels: { title: string; targets?: { expr: string }[] }[];
  templating: { list: { name: string; query?: { query: string } | string; regex?: string }[] };
}

function dashboards(): Dashboard[] {
  const dir = join(repoRoot, 'deploy', 'helm', 'spark', 'files', 'dashboards');
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => JSON.parse(readFileSync(join(dir, f), 'utf8')) as Dashboard);
}

/** Grafana's `label_values(selector, label)` through the series API Grafana uses for it. */
async function labelValues(
  prom: RunningPrometheus,
  query: string,
  vars: Record<string, string>,
): Promise<string[]> {
  const m = /^label_values\((.+),\s*(\w+)\)$/.exec(substitute(query, vars));
  assert.ok(m, `a label_values variable query: ${query}`);
  return prom.api<string[]>(`/api/v1/label/${m[2]!}/values`, { 'match[]': m[1]! });
}

function substitute(expr: string, vars: Record<string, string>): string {
  return expr.replace(/\$(__rate_interval|\w+)/g, (all, v: string) =>
    v === '__rate_interval' ? RATE_INTERVAL : (vars[v] ?? all),
  );
}

/** A short job through every phase (warm-up, policy, reward) on the tiny model. */
function tinyJob(dir: string): JobSpec {
  const gen = (split: 'train' | 'test', count: number) =>
    generateTasks({ seed: 3, split, count, families: ['compare'], difficulties: [1], unique: true });
  // below the local cluster's dataset root (`<data dir>/datasets`): jobs read only there
  const datasets = join(dir, 'cluster', 'datasets');
  mkdirSync(datasets, { recursive: true });
  const file = join(datasets, 'tasks.jsonl');
  const lines = [...gen('train', 64), ...gen('test', 8)].map((p) =>
    JSON.stringify({ problem: p.question, solution: p.solution, answer: p.answer }),
  );
  writeFileSync(file, `${lines.join('\n')}\n`);
  return JobSpec.fromPartial({
    name: 'prometheus-live',
    model: 'tiny',
    dataset: file,
    datasetFormat: 'math',
    algorithm: Algorithm.ALGORITHM_SPARK,
    seed: 5,
    batchSize: 4,
    groupSize: 2,
    maxSteps: 2,
    warmupSteps: 2,
    warmupBatchSize: 8,
    learningRate: 5e-4,
    temperature: 1,
    maxNewTokens: 16,
    miniBatchSize: 8,
    microBatchSize: 8,
    evalSize: 8,
    evalInterval: 0,
  });
}

interface RunningExporter {
  address: string;
  stop(): Promise<void>;
  output(): string;
}

/** Starts redis_exporter against `redisUrl` the way the chart's sidecar runs (environment, not flags); awaits /health. */
async function startRedisExporter(redisUrl: string): Promise<RunningExporter> {
  const address = `127.0.0.1:${await freePort()}`;
  const child: ChildProcess = spawn(REDIS_EXPORTER_BIN, [], {
    env: { ...process.env, REDIS_ADDR: redisUrl, REDIS_EXPORTER_WEB_LISTEN_ADDRESS: address },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const keep = (c: Buffer): void => {
    out = (out + c.toString('utf8')).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let spawnError: Error | null = null;
  child.once('error', (err) => (spawnError = err));
  const exited = new Promise<void>((r) => child.once('close', () => r()));
  const stop = async (): Promise<void> => {
    if (spawnError || child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await until(
      async () => {
        if (spawnError) throw new Error(`cannot start ${REDIS_EXPORTER_BIN}: ${String(spawnError)}`);
        if (child.exitCode !== null) throw new Error(`redis_exporter exited with ${child.exitCode}:\n${out}`);
        try {
          return (await fetch(`http://${address}/health`, { signal: AbortSignal.timeout(2_000) })).ok;
        } catch {
          return false;
        }
      },
      { timeoutMs: 20_000, intervalMs: 100, message: `redis_exporter answers /health\n${out}` },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return { address, stop, output: () => out };
}

const skip = prometheusAvailable
  ? false
  : process.env.CI
    ? false // under CI a missing prometheus fails (startPrometheus throws) rather than skips
    : 'prometheus is not installed (apt-get install prometheus)';

describe('dashboards and alerts against a live Prometheus', { skip }, () => {
  let dir: string;
  let cluster: LocalCluster;
  let prom: RunningPrometheus;
  let exporter: RunningExporter | undefined;
  let vars: Record<string, string> = {};

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'spark-prom-live-'));
    cluster = await startLocalCluster({ dataDir: join(dir, 'cluster'), prefix: 'prom-live' });
    const count = new Map<string, number>();
    const targets: ScrapeTarget[] = cluster.children.map((c) => {
      const i = count.get(c.service) ?? 0;
      count.set(c.service, i + 1);
      const service = `${RELEASE}-${c.service}`;
      return {
        job: service,
        address: `127.0.0.1:${c.ready.metricsPort}`,
        // What the Prometheus Operator sets from the ServiceMonitor's endpoint (besides job and instance).
        labels: {
          namespace: NAMESPACE,
          service,
          pod: `${service}-${i}`,
          container: c.service,
          endpoint: 'metrics',
        },
      };
    });
    if (redisExporterAvailable) {
      // The chart sets maxmemory (a share of the memory limit) and noeviction; the private Redis has the
      // policy only. 256 MiB: the memory alerts' ratio exists and stays far below their thresholds.
      const redis = connectRedis(cluster.redisUrl);
      try {
        // producer semantics (no offline queue): the first command waits for the connection
        await until(() => redis.status === 'ready', {
          timeoutMs: 5_000,
          message: 'the cluster’s Redis connects',
        });
        await redis.config('SET', 'maxmemory', String(256 * 1024 * 1024));
      } finally {
        redis.disconnect();
      }
      exporter = await startRedisExporter(cluster.redisUrl);
      // What the ServiceMonitor gives the sidecar's port `metrics` of the StatefulSet's pod.
      targets.push({
        job: REDIS_JOB,
        address: exporter.address,
        labels: {
          namespace: NAMESPACE,
          service: REDIS_JOB,
          pod: `${REDIS_JOB}-0`,
          container: 'metrics',
          endpoint: 'metrics',
        },
      });
    }
    prom = await startPrometheus(targets);
    // The first scrape of every target.
    await until(async () => (await prom.query('up == 1')).length === targets.length, {
      timeoutMs: 20_000,
      intervalMs: 200,
      message: `every target scraped once\n${prom.output()}`,
    });
    const client = new JobClient({ address: cluster.coordinatorAddress, token: null, deadlineMs: 30_000 });
    try {
      const { jobId } = await client.submit(tinyJob(dir));
      const outcome = await Promise.race([
        followJob(client, jobId, { out: null }),
        cluster.failure.then((f) => {
          throw new Error(`${f.name} died during the job (${f.signal ?? f.code}):\n${f.logTail}`);
        }),
      ]);
      assert.equal(outcome.state, 'SUCCEEDED', outcome.status.message);
    } finally {
      client.close();
    }
    // A scrape after the job's end: the finished job's gauge is in Prometheus.
    await until(async () => (await prom.query('spark_coordinator_jobs{state="succeeded"} > 0')).length > 0, {
      timeoutMs: 20_000,
      intervalMs: 200,
      message: 'the succeeded job scraped',
    });
    // Every current series has the two samples in the rate window that rate() and increase() need (series
    // that appeared late in the job have had one scrape only; series gone since, e.g. the finished job's
    // queue depths, are not current).
    const key = (m: Record<string, string>) => JSON.stringify(Object.entries(m).sort());
    const twoSamples = async () => {
      const current = new Set((await prom.query(`{namespace="${NAMESPACE}"}`)).map((s) => key(s.metric)));
      const range = await prom.api<{ result: { metric: Record<string, string>; values: unknown[] }[] }>(
        '/api/v1/query',
        { query: `{namespace="${NAMESPACE}"}[${RATE_INTERVAL}]` },
      );
      return range.result.filter((s) => current.has(key(s.metric)) && s.values.length < 2).length === 0;
    };
    await until(twoSamples, {
      timeoutMs: 20_000,
      intervalMs: 200,
      message: 'two samples of every series in the rate window',
    });
  });
  after(async () => {
    await prom?.stop();
    await exporter?.stop();
    await cluster?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('resolves the dashboards’ namespace and release variables to the deployment’s', async () => {
    for (const d of dashboards()) {
      const v: Record<string, string> = {};
      for (const t of d.templating.list) {
        if (t.name === 'datasource') continue;
        const q = typeof t.query === 'string' ? t.query : t.query!.query;
        let values = await labelValues(prom, q, v);
        const re = t.regex ? /^\/(.*)\/$/.exec(t.regex)?.[1] : undefined;
        if (re) values = values.flatMap((x) => new RegExp(re).exec(x)?.slice(1, 2) ?? []);
        assert.deepEqual(values, [t.name === 'namespace' ? NAMESPACE : RELEASE], `${d.title}: $${t.name}`);
        v[t.name] = values[0]!;
      }
      assert.deepEqual(Object.keys(v).sort(), ['namespace', 'release'], d.title);
      vars = v;
    }
  });

  it('returns series for every dashboard query (exporters’ metrics aside)', async () => {
    assert.deepEqual(vars, { namespace: NAMESPACE, release: RELEASE }, 'the variables test ran first');
    const findings: Finding[] = [];
    let checked = 0;
    const skipped: string[] = [];
    for (const d of dashboards())
      for (const p of d.panels)
        for (const t of p.targets ?? []) {
          const expr = substitute(t.expr, vars);
          if (metricNamesIn(expr).every((n) => EXTERNAL.has(n))) {
            skipped.push(`${d.title} / ${p.title}`);
            continue;
          }
          checked++;
          findings.push(...(await checkDashboardQuery(prom, expr)));
        }
    assert.deepEqual(findings, []);
    assert.ok(checked >= 50, `${checked} queries checked`);
    process.stderr.write(
      `prometheus-live: ${checked} dashboard queries checked; not checked (exporters): ${[...new Set(skipped)].join('; ')}\n`,
    );
  });

  it('evaluates every alert expression, with series behind each selector and the quiet alerts quiet', async () => {
    const rules = alertRules();
    assert.ok(rules.length >= 15);
    const findings: Finding[] = [];
    for (const r of rules) findings.push(...(await checkAlert(prom, r)));
    assert.deepEqual(findings, []);
    const by = (k: string) =>
      rules
        .filter((r) => alertCoverage.get(r.alert) === k)
        .map((r) => r.alert)
        .join(', ');
    process.stderr.write(
      `prometheus-live: alerts with selectors and compared operands checked: ${by('operands')}; ` +
        `selectors only (event-only or exporter series in them, or absent()): ${by('selectors')}; ` +
        `not checked (exporters' series only): ${by('exporters only')}\n`,
    );
    for (const name of QUIET)
      assert.ok(
        rules.some((r) => r.alert === name),
        `${name} exists`,
      );
  });

  it(
    'checks the Redis panels and Redis alerts against the chart’s redis_exporter release',
    {
      skip: redisExporterAvailable ? false : process.env.CI ? false : noRedisExporter,
    },
    async () => {
      // Under CI a missing binary fails here (the other checks then leave the Redis series out).
      assert.ok(redisExporterAvailable, noRedisExporter);
      if (!process.env.SPARK_REDIS_EXPORTER_BIN) {
        const built = readFileSync(REDIS_EXPORTER_STAMP, 'utf8').trim();
        assert.equal(built, CHART_REDIS_EXPORTER, `${REDIS_EXPORTER_STAMP}: the chart's sidecar release`);
      }
      assert.ok(exporter, 'redis_exporter started');
      const findings: Finding[] = [];
      const panels: string[] = [];
      for (const d of dashboards())
        for (const p of d.panels)
          for (const t of p.targets ?? []) {
            const expr = substitute(t.expr, { namespace: NAMESPACE, release: RELEASE });
            if (!metricNamesIn(expr).some(isRedisMetric)) continue;
            panels.push(`${d.title} / ${p.title}`);
            findings.push(...(await checkDashboardQuery(prom, expr)));
            if ((await prom.query(expr)).length === 0) findings.push({ expr, problem: 'returns no series' });
          }
      const redisAlerts = alertRules().filter((r) =>
        vectorSelectorsIn(r.expr).some(
          (sel) => isRedisMetric(/^[A-Za-z_:][\w:]*/.exec(sel)![0]) || selectorJob(sel) === REDIS_JOB,
        ),
      );
      for (const r of redisAlerts) {
        findings.push(...(await checkAlert(prom, r)));
        if (alertCoverage.get(r.alert) !== 'operands')
          findings.push({ expr: r.expr, problem: `${r.alert}: its compared operands were not checked` });
      }
      assert.deepEqual(findings, [], exporter.output());
      assert.ok(new Set(panels).size >= 4, `Redis panels: ${[...new Set(panels)].join('; ')}`);
      assert.deepEqual(redisAlerts.map((r) => r.alert).sort(), [...REDIS_QUIET].sort());
      // The quiet ones are quiet (checkAlert reports a QUIET alert that fires; here once more, explicitly).
      for (const r of redisAlerts) assert.equal((await prom.query(r.expr.trim())).length, 0, r.alert);
      // And the check can fail: the exporter's series under another job, a Redis alert that fires.
      const wrongJob = await checkAlert(prom, {
        alert: 'X',
        expr: 'max by (namespace) (redis_up{job="spark-redis-metrics"}) == 0',
      });
      assert.match(
        wrongJob.map((f) => f.problem).join('\n'),
        /redis_up\{job="spark-redis-metrics"\} returns no series/,
      );
      const firing = await checkAlert(prom, {
        alert: 'SparkRedisDown',
        expr: 'max by (namespace) (redis_up{job="spark-redis"}) == 1',
      });
      assert.match(firing.map((f) => f.problem).join('\n'), /SparkRedisDown fires on a healthy cluster/);
      process.stderr.write(
        `prometheus-live: redis_exporter ${CHART_REDIS_EXPORTER}: ${new Set(panels).size} Redis panels and ` +
          `${redisAlerts.length} Redis alerts checked (${redisAlerts.map((r) => r.alert).join(', ')})\n`,
      );
    },
  );

  it('catches a misspelt metric, a wrong job, an event-only metric that no target exposes, and a non-firing alert that fires', async () => {
    const ok = 'sum(rate(spark_coordinator_steps_total{namespace=~"spark",job=~"spark-coordinator"}[1m]))';
    assert.deepEqual(await checkDashboardQuery(prom, ok), []);
    const typo = await checkDashboardQuery(prom, ok.replace('steps_total', 'step_total'));
    assert.match(typo.map((f) => f.problem).join('\n'), /spark_coordinator_step_total.* returns no series/);
    const wrongJob = await checkDashboardQuery(prom, ok.replace('spark-coordinator', 'spark-learner'));
    assert.ok(wrongJob.length > 0);
    const event = await checkDashboardQuery(
      prom,
      'sum(rate(spark_coordinator_errors_total{job=~"spark-learner"}[1m]))',
    );
    assert.match(event.map((f) => f.problem).join('\n'), /no target of job spark-learner exposes it/);
    const bad = await checkDashboardQuery(prom, 'sum(rate(spark_coordinator_steps_total[1m])');
    assert.match(bad[0]!.problem, /parse error/);
    const firing = await checkAlert(prom, {
      alert: 'SparkServiceDown',
      expr: 'up{job="spark-coordinator"} == 1',
    });
    assert.match(firing.map((f) => f.problem).join('\n'), /fires on a healthy cluster/);
    const noNamespace = await checkAlert(prom, {
      alert: 'X',
      expr: 'max(spark_coordinator_policy_version_lag_versions{job="spark-coordinator"}) > 1',
    });
    assert.match(noNamespace.map((f) => f.problem).join('\n'), /has no namespace="spark" label/);
    assert.deepEqual(comparedOperands('max by (a) (x{b=">"}) > 0\n  and on (a)\n  sum(y[5m]) == 0'), [
      'max by (a) (x{b=">"})',
      'sum(y[5m])',
    ]);
  });
});
