// Metrics: one prom-client registry per process, metric names checked against
// `spark_<service>_<thing>_<unit>`, default Node metrics unprefixed, and a small HTTP server that serves
// `/metrics` (and `/healthz`) on its own port.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

import { InvalidArgumentError } from '../errors/index.js';

const misnamedDefaults = [
  'nodejs_active_handles_total',
  'nodejs_active_requests_total',
  'nodejs_active_resources_total',
];

// Base units, plus the things a dimensionless gauge counts (Prometheus names a count by its unit in the
// plural: `_jobs`, `_tasks`, …). `_count` is not allowed: promtool reserves it for histograms.
const units = [
  'total',
  'seconds',
  'bytes',
  'ratio',
  'info',
  'tokens',
  'samples',
  'jobs',
  'tasks',
  'items',
  'models',
  'versions',
  'version',
];
const unitSuffixes = units.map((u) => `_${u}`);

/** Metric-name-safe form of a service name: "reward-synthesis" → "reward_synthesis". */
export function metricServiceName(service: string): string {
  return service.replace(/[^a-zA-Z0-9]+/g, '_').toLowerCase();
}

export interface MetricSpec<L extends string> {
  /** The part after `spark_<service>_`, ending in a unit: "samples_total", "step_seconds". */
  name: string;
  help: string;
  labelNames?: readonly L[];
}

/** The metrics of one service process: its registry plus typed, name-checked metric constructors. */
export class ServiceMetrics {
  readonly registry: Registry;
  readonly prefix: string;

  constructor(service: string, options: { defaultMetrics?: boolean } = {}) {
    this.registry = new Registry();
    this.prefix = `spark_${metricServiceName(service)}_`;
    if (options.defaultMetrics ?? true) {
      collectDefaultMetrics({ register: this.registry });
      // prom-client exposes these gauges with a counter's `_total` suffix, which promtool's lint rejects
      // (and which misleads rate()); the event-loop and heap metrics cover the same ground.
      for (const name of misnamedDefaults) this.registry.removeSingleMetric(name);
    }
  }

  private fullName(name: string): string {
    if (!/^[a-z][a-z0-9_]*$/.test(name)) {
      throw new InvalidArgumentError(`metric name "${name}" must be lower_snake_case`);
    }
    if (!units.includes(name) && !unitSuffixes.some((s) => name.endsWith(s))) {
      throw new InvalidArgumentError(`metric name "${name}" must end in a unit (${unitSuffixes.join(', ')})`);
    }
    return this.prefix + name;
  }

  counter<L extends string>(spec: MetricSpec<L>): Counter<L> {
    if (!spec.name.endsWith('_total'))
      throw new InvalidArgumentError(`counter "${spec.name}" must end in _total`);
    return new Counter<L>({
      name: this.fullName(spec.name),
      help: spec.help,
      labelNames: spec.labelNames ?? [],
      registers: [this.registry],
    });
  }

  gauge<L extends string>(
    spec: MetricSpec<L> & { collect?: (this: Gauge<L>) => void | Promise<void> },
  ): Gauge<L> {
    return new Gauge<L>({
      name: this.fullName(spec.name),
      help: spec.help,
      labelNames: spec.labelNames ?? [],
      registers: [this.registry],
      ...(spec.collect ? { collect: spec.collect } : {}),
    });
  }

  histogram<L extends string>(spec: MetricSpec<L> & { buckets?: number[] }): Histogram<L> {
    return new Histogram<L>({
      name: this.fullName(spec.name),
      help: spec.help,
      labelNames: spec.labelNames ?? [],
      registers: [this.registry],
      ...(spec.buckets ? { buckets: spec.buckets } : {}),
    });
  }
}

export interface MetricsServer {
  readonly port: number;
  readonly url: string;
  close(): Promise<void>;
}

/** Serves the registry on `http://host:port/metrics`; `/healthz` answers 200 while `healthy()` is true. */
export async function startMetricsServer(
  registry: Registry,
  options: { host?: string; port?: number; healthy?: () => boolean } = {},
): Promise<MetricsServer> {
  const host = options.host ?? '127.0.0.1';
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET') {
      res.writeHead(405).end();
      return;
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (body) => res.writeHead(200, { 'content-type': registry.contentType }).end(body),
        (err: unknown) => res.writeHead(500).end(String(err)),
      );
    } else if (path === '/healthz') {
      const ok = options.healthy ? options.healthy() : true;
      res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain' }).end(ok ? 'ok\n' : 'unhealthy\n');
    } else {
      res.writeHead(404).end();
    }
  });
  server.keepAliveTimeout = 5_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    port,
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}/metrics`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
