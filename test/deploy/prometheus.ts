// A real Prometheus for tests (Debian's `prometheus` binary, not a test file): started on a free loopback
// port with a generated scrape configuration and a private TSDB directory, awaited through its HTTP API, and
// queried through the same API Grafana and the rule evaluator use.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { until } from '@spark/runtime/testing';
import { stringify } from 'yaml';

export const PROMETHEUS_BIN = process.env.SPARK_PROMETHEUS_BIN ?? 'prometheus';
export const prometheusAvailable = spawnSync(PROMETHEUS_BIN, ['--version']).status === 0;

/** One scrape target: the scrape job's name, the address of its /metrics, and labels to attach. */
export interface ScrapeTarget {
  job: string;
  address: string;
  labels: Record<string, string>;
}

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

export interface RunningPrometheus {
  url: string;
  /** An instant query; throws with Prometheus's message when the query is invalid. */
  query(expr: string): Promise<Sample[]>;
  /** GET an API path (`/api/v1/…`) and return its `data`; throws on an error status. */
  api<T>(path: string, params?: Record<string, string | string[]>): Promise<T>;
  stop(): Promise<void>;
  output(): string;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Starts Prometheus scraping `targets` every `scrapeIntervalS` seconds; resolves once its API answers
 * `/-/ready`. The caller awaits the first scrape itself (e.g. `up` of every target).
 */
export async function startPrometheus(
  targets: ScrapeTarget[],
  scrapeIntervalS = 1,
  readyTimeoutMs = 30_000,
): Promise<RunningPrometheus> {
  const dir = mkdtempSync(join(tmpdir(), 'spark-prometheus-'));
  const config = {
    global: { scrape_interval: `${scrapeIntervalS}s`, evaluation_interval: `${scrapeIntervalS}s` },
    scrape_configs: [...new Set(targets.map((t) => t.job))].map((job) => ({
      job_name: job,
      metrics_path: '/metrics',
      scrape_timeout: `${scrapeIntervalS}s`,
      static_configs: targets
        .filter((t) => t.job === job)
        .map((t) => ({ targets: [t.address], labels: t.labels })),
    })),
  };
  writeFileSync(join(dir, 'prometheus.yml'), stringify(config));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    PROMETHEUS_BIN,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1h',
      '--log.level=warn',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  const keep = (c: Buffer): void => {
    out = (out + c.toString('utf8')).slice(-20_000);
  };
  child.stdout!.on('data', keep);
  child.stderr!.on('data', keep);
  let spawnError: Error | null = null;
  child.once('error', (err) => (spawnError = err));
  const exited = new Promise<void>((r) => child.once('close', () => r()));

  async function api<T>(path: string, params: Record<string, string | string[]> = {}): Promise<T> {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) for (const one of [v].flat()) qs.append(k, one);
    const res = await fetch(`${url}${path}?${qs.toString()}`, { signal: AbortSignal.timeout(10_000) });
    const body = (await res.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success')
      throw new Error(`Prometheus ${path} ${qs.toString()}: ${body.error ?? res.status}`);
    return body.data;
  }

  const stop = async (): Promise<void> => {
    if (!spawnError && child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    await until(
      async () => {
        if (spawnError) throw new Error(`cannot start ${PROMETHEUS_BIN}: ${String(spawnError)}`);
        if (child.exitCode !== null) throw new Error(`prometheus exited with ${child.exitCode}:\n${out}`);
        try {
          return (await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(2_000) })).ok;
        } catch {
          return false;
        }
      },
      { timeoutMs: readyTimeoutMs, intervalMs: 100, message: `Prometheus on ${url} to be ready` },
    );
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    api,
    query: async (expr) =>
      (await api<{ resultType: string; result: Sample[] }>('/api/v1/query', { query: expr })).result,
    stop,
    output: () => out,
  };
}
