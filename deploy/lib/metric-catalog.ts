// The metric catalog: every Prometheus metric the deployed services define, read from their TypeScript
// source with the compiler's parser (no service is started). It is the single source that the Grafana
// dashboards, the alert rules and docs/metrics.md are checked against, so none of them can name a metric
// that no service exports.
//
// What it reads: in services/<service>/src (tests, benchmarks and generated code excluded), every call
// `<x>.counter({ name: '…', help: '…', labelNames: [...] })` (also `.gauge` and `.histogram`), i.e. the
// ServiceMetrics constructors of @spark/runtime/metrics, which prefix names with `spark_<service>_`. Metrics
// defined in the libraries under services/lib (shared helpers that receive a service's ServiceMetrics) belong to every
// deployed service. A definition whose name is not a string literal is reported as a problem rather than
// silently skipped, so the catalog never under-reports.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

import ts from 'typescript';

/** The services the chart deploys, as directory names under services/. */
export const DEPLOYED_SERVICES = [
  'coordinator',
  'rollout',
  'verifier',
  'reward-synthesis',
  'learner',
] as const;
export type DeployedService = (typeof DEPLOYED_SERVICES)[number];

export type MetricType = 'counter' | 'gauge' | 'histogram';

export interface MetricDef {
  /** Full exposed name, e.g. `spark_learner_step_seconds`. */
  name: string;
  type: MetricType;
  help: string;
  labels: string[];
  /** The service whose /metrics exposes it. */
  service: DeployedService;
  /** Source file (repository-relative) and line of the definition. */
  source: string;
}

export interface MetricCatalog {
  metrics: MetricDef[];
  /** Definitions the parser could not read (non-literal names, …): each one a message with its location. */
  problems: string[];
}

const SKIP_DIRS = new Set(['node_modules', 'dist', 'gen', 'bench', 'test', 'testing', 'fixtures']);

function sourceFiles(dir: string, out: string[] = []): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const name of names.sort()) {
    if (SKIP_DIRS.has(name)) continue;
    const full = join(dir, name);
    if (statSync(full).isDirectory()) sourceFiles(full, out);
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) out.push(full);
  }
  return out;
}

/** `reward-synthesis` → `spark_reward_synthesis_` (the prefix ServiceMetrics gives that service). */
export function metricPrefix(service: string): string {
  return `spark_${service.replace(/[^a-zA-Z0-9]+/g, '_').toLowerCase()}_`;
}

/** The text of a string literal, a no-substitution template or a `+` concatenation of those; else null. */
function literalText(node: ts.Expression): string | null {
  if (ts.isStringLiteral(node) || ts.isNoSubstitutionTemplateLiteral(node)) return node.text;
  if (ts.isParenthesizedExpression(node)) return literalText(node.expression);
  if (ts.isBinaryExpression(node) && node.operatorToken.kind === ts.SyntaxKind.PlusToken) {
    const l = literalText(node.left);
    const r = literalText(node.right);
    return l === null || r === null ? null : l + r;
  }
  return null;
}

/** Top-level `const X = [...]` (optionally `as const`) arrays of string literals in one file. */
function constStringArrays(file: ts.SourceFile): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const visit = (node: ts.Node): void => {
    if (ts.isVariableDeclaration(node) && ts.isIdentifier(node.name) && node.initializer) {
      const arr = stringArray(node.initializer, new Map());
      if (arr) out.set(node.name.text, arr);
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return out;
}

function stringArray(node: ts.Expression, consts: Map<string, string[]>): string[] | null {
  let n = node;
  while (ts.isAsExpression(n) || ts.isParenthesizedExpression(n) || ts.isSatisfiesExpression(n))
    n = n.expression;
  if (ts.isIdentifier(n)) return consts.get(n.text) ?? null;
  if (!ts.isArrayLiteralExpression(n)) return null;
  const out: string[] = [];
  for (const el of n.elements) {
    const t = literalText(el);
    if (t === null) return null;
    out.push(t);
  }
  return out;
}

interface RawDef {
  name: string;
  type: MetricType;
  help: string;
  labels: string[];
  source: string;
}

/** Every metric definition in one source text. */
export function parseMetricDefinitions(
  text: string,
  fileName: string,
): { defs: RawDef[]; problems: string[] } {
  const file = ts.createSourceFile(fileName, text, ts.ScriptTarget.ES2023, true, ts.ScriptKind.TS);
  const consts = constStringArrays(file);
  const defs: RawDef[] = [];
  const problems: string[] = [];
  const visit = (node: ts.Node): void => {
    if (
      ts.isCallExpression(node) &&
      ts.isPropertyAccessExpression(node.expression) &&
      ['counter', 'gauge', 'histogram'].includes(node.expression.name.text) &&
      node.arguments.length >= 1 &&
      ts.isObjectLiteralExpression(node.arguments[0]!)
    ) {
      const obj = node.arguments[0];
      const props = new Map<string, ts.Expression>();
      for (const p of obj.properties) {
        if (ts.isPropertyAssignment(p) && (ts.isIdentifier(p.name) || ts.isStringLiteral(p.name))) {
          props.set(p.name.text, p.initializer);
        }
      }
      const nameNode = props.get('name');
      const helpNode = props.get('help');
      // Only calls shaped like a metric spec ({ name, help }) are definitions.
      if (nameNode && helpNode) {
        const line = file.getLineAndCharacterOfPosition(node.getStart(file)).line + 1;
        const where = `${fileName}:${line}`;
        const name = literalText(nameNode);
        const help = literalText(helpNode);
        const labelsNode = props.get('labelNames');
        const labels = labelsNode ? stringArray(labelsNode, consts) : [];
        if (name === null) problems.push(`${where}: metric name is not a string literal`);
        else if (help === null) problems.push(`${where}: help of "${name}" is not a string literal`);
        else if (labels === null) problems.push(`${where}: labelNames of "${name}" is not a literal array`);
        else
          defs.push({
            name,
            type: node.expression.name.text as MetricType,
            help,
            labels,
            source: where,
          });
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(file);
  return { defs, problems };
}

/** Reads the catalog from the repository at `root`. */
export function readMetricCatalog(root: string): MetricCatalog {
  const metrics: MetricDef[] = [];
  const problems: string[] = [];
  const read = (dir: string): RawDef[] => {
    const out: RawDef[] = [];
    for (const f of sourceFiles(join(root, dir))) {
      const r = parseMetricDefinitions(readFileSync(f, 'utf8'), relative(root, f));
      out.push(...r.defs);
      problems.push(...r.problems);
    }
    return out;
  };
  // Shared definitions (a helper in a library given a service's registry) exist in every service.
  const shared = read('services/lib').filter((d) => !d.source.includes('/metrics/'));
  for (const service of DEPLOYED_SERVICES) {
    const own = read(`services/${service}/src`);
    for (const d of [...own, ...shared]) {
      metrics.push({ ...d, name: metricPrefix(service) + d.name, service });
    }
  }
  // One name, one definition per service (prom-client would throw at start-up otherwise).
  const seen = new Map<string, MetricDef>();
  const unique: MetricDef[] = [];
  for (const m of metrics) {
    const prev = seen.get(m.name);
    if (!prev) {
      seen.set(m.name, m);
      unique.push(m);
    } else if (prev.type !== m.type || prev.labels.join() !== m.labels.join()) {
      problems.push(`${m.source}: "${m.name}" is also defined at ${prev.source} with another type or labels`);
    }
  }
  unique.sort((a, b) => a.name.localeCompare(b.name));
  return { metrics: unique, problems };
}

/** Every series name a metric exposes (histograms: `_bucket`, `_sum`, `_count`). */
export function seriesNames(m: Pick<MetricDef, 'name' | 'type'>): string[] {
  return m.type === 'histogram' ? [`${m.name}_bucket`, `${m.name}_sum`, `${m.name}_count`] : [m.name];
}
