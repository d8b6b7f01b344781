// A small builder for Grafana dashboard JSON (schema 39): rows of `timeseries` panels laid out on the
// 24-column grid, every panel on the `${datasource}` variable with a unit, every query filtered by the
// `namespace` variable. The dashboards in dashboards.ts are written with it; generate.ts writes the JSON.

export interface Query {
  expr: string;
  /** Legend template, e.g. `{{kind}}`. */
  legend: string;
}

export interface PanelSpec {
  title: string;
  description: string;
  /** Grafana unit id: `ops` (per second), `s`, `percentunit`, `bytes`, `Bps`, `short`, `none`. */
  unit: string;
  queries: Query[];
  /** Width in grid columns (default 12: two panels per row). */
  width?: number;
  min?: number;
  max?: number;
  stack?: boolean;
}

export interface RowSpec {
  title: string;
  panels: PanelSpec[];
}

export interface DashboardSpec {
  uid: string;
  title: string;
  description: string;
  rows: RowSpec[];
}

const DATASOURCE = { type: 'prometheus', uid: '${datasource}' } as const;
const PANEL_HEIGHT = 8;

/**
 * The selector every query carries, so one Grafana can show several Spark deployments apart. Written after
 * a metric name (`metric{NS}`), it is widened by `scopeQuery` with the release's scrape job of that metric
 * (the ServiceMonitor's job label is the Service name, `<release full name>-<component>`).
 */
export const NS = 'namespace=~"$namespace"';

/** The release's Spark components, as the `job` label names them after the release's full name. */
export const SPARK_COMPONENTS = [
  'coordinator',
  'rollout',
  'verifier',
  'reward-synthesis',
  'learner',
] as const;

/** The `job` matcher for a metric of the release, or null for series whose job is not the release's. */
export function jobMatcher(metric: string): string | null {
  const spark = /^spark_([a-z]+(?:_synthesis)?)_/.exec(metric);
  if (spark) return `job=~"$release-${spark[1]!.replace('_', '-')}"`;
  if (metric.startsWith('redis_')) return 'job=~"$release-redis"';
  if (metric === 'up' || metric.startsWith('process_') || metric.startsWith('nodejs_'))
    return `job=~"$release-(${SPARK_COMPONENTS.join('|')})"`;
  return null;
}

/** Adds the release's job matcher to every `metric{namespace=~"$namespace"…}` selector of a query. */
export function scopeQuery(expr: string): string {
  return expr.replace(/([A-Za-z_:][A-Za-z0-9_:]*)\{namespace=~"\$namespace"/g, (m, metric: string) => {
    const job = jobMatcher(metric);
    return job ? `${metric}{${NS},${job}` : m;
  });
}

/** A series every Spark deployment exports (the variables list namespaces and releases from it). */
const SCOPE_METRIC = 'spark_coordinator_steps_total';

function panel(spec: PanelSpec, id: number, x: number, y: number, w: number): Record<string, unknown> {
  const defaults: Record<string, unknown> = {
    unit: spec.unit,
    custom: {
      drawStyle: 'line',
      lineWidth: 1,
      fillOpacity: spec.stack ? 30 : 10,
      showPoints: 'never',
      spanNulls: false,
      stacking: { mode: spec.stack ? 'normal' : 'none', group: 'A' },
    },
  };
  if (spec.min !== undefined) defaults.min = spec.min;
  if (spec.max !== undefined) defaults.max = spec.max;
  return {
    id,
    type: 'timeseries',
    title: spec.title,
    description: spec.description,
    datasource: DATASOURCE,
    gridPos: { h: PANEL_HEIGHT, w, x, y },
    fieldConfig: { defaults, overrides: [] },
    options: {
      legend: { displayMode: 'list', placement: 'bottom', showLegend: true },
      tooltip: { mode: 'multi', sort: 'desc' },
    },
    targets: spec.queries.map((q, i) => ({
      datasource: DATASOURCE,
      expr: scopeQuery(q.expr),
      legendFormat: q.legend,
      range: true,
      refId: String.fromCharCode(65 + i),
    })),
  };
}

/** The dashboard JSON object for `spec` (deterministic: same spec, same JSON). */
export function buildDashboard(spec: DashboardSpec): Record<string, unknown> {
  const panels: Record<string, unknown>[] = [];
  let id = 1;
  let y = 0;
  for (const row of spec.rows) {
    panels.push({
      id: id++,
      type: 'row',
      title: row.title,
      collapsed: false,
      gridPos: { h: 1, w: 24, x: 0, y },
      panels: [],
    });
    y += 1;
    let x = 0;
    for (const p of row.panels) {
      const w = p.width ?? 12;
      if (x + w > 24) {
        x = 0;
        y += PANEL_HEIGHT;
      }
      panels.push(panel(p, id++, x, y, w));
      x += w;
    }
    y += PANEL_HEIGHT;
  }
  return {
    annotations: { list: [] },
    description: spec.description,
    editable: false,
    fiscalYearStartMonth: 0,
    graphTooltip: 1,
    links: [],
    panels,
    refresh: '30s',
    schemaVersion: 39,
    tags: ['spark'],
    templating: {
      list: [
        {
          name: 'datasource',
          label: 'Data source',
          type: 'datasource',
          query: 'prometheus',
          current: {},
          hide: 0,
          includeAll: false,
          multi: false,
          options: [],
          refresh: 1,
          regex: '',
        },
        {
          name: 'namespace',
          label: 'Namespace',
          type: 'query',
          datasource: DATASOURCE,
          definition: `label_values(${SCOPE_METRIC}, namespace)`,
          query: { query: `label_values(${SCOPE_METRIC}, namespace)`, refId: 'namespace' },
          current: {},
          hide: 0,
          includeAll: true,
          allValue: '.*',
          multi: false,
          options: [],
          refresh: 2,
          regex: '',
          sort: 1,
        },
        {
          // The release's full name, read from its coordinator's job label (`<full name>-coordinator`).
          name: 'release',
          label: 'Release',
          type: 'query',
          datasource: DATASOURCE,
          definition: `label_values(${SCOPE_METRIC}{${NS}}, job)`,
          query: { query: `label_values(${SCOPE_METRIC}{${NS}}, job)`, refId: 'release' },
          current: {},
          hide: 0,
          includeAll: true,
          allValue: '.+',
          multi: false,
          options: [],
          refresh: 2,
          regex: '/^(.+)-coordinator$/',
          sort: 1,
        },
      ],
    },
    time: { from: 'now-6h', to: 'now' },
    timepicker: {},
    timezone: 'utc',
    title: spec.title,
    uid: spec.uid,
    version: 1,
  };
}

/** Every PromQL expression of a built dashboard (panels and variables), for the metric-existence check. */
export function dashboardExpressions(dashboard: Record<string, unknown>): string[] {
  const out: string[] = [];
  for (const p of dashboard.panels as { targets?: { expr: string }[] }[]) {
    for (const t of p.targets ?? []) out.push(t.expr);
  }
  const vars = (dashboard.templating as { list: { query?: unknown }[] }).list;
  for (const v of vars) {
    const q = v.query as { query?: string } | string | undefined;
    const text = typeof q === 'object' ? q.query : undefined;
    const inner = text ? /^label_values\((\w+)/.exec(text)?.[1] : undefined;
    if (inner) out.push(inner);
  }
  return out;
}
