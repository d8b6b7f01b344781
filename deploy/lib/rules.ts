// The alert rules' single source is the chart's files/prometheus-rules.yaml, whose `${…}` placeholders the
// chart fills from its values (templates/_helpers.tpl, "spark.alertRules"). This module fills them the same
// way from values.yaml's defaults for release `spark` in namespace `spark`, which is what
// deploy/prometheus/rules.yaml holds (promtool unit-tests that file); test/deploy/helm-render.test.ts renders
// the chart with helm and checks both agree.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** values.yaml service blocks → component (directory) names, as `spark.services` in _helpers.tpl. */
export const COMPONENTS: Record<string, string> = {
  coordinator: 'coordinator',
  rollout: 'rollout',
  verifier: 'verifier',
  rewardSynthesis: 'reward-synthesis',
  learner: 'learner',
};

/** spark_verifier_verify_seconds buckets, in ms → the `le` label value (the verifier's budgetMs must be one). */
export const VERIFIER_BUDGET_BUCKETS: Record<string, string> = {
  '2': '0.002',
  '10': '0.01',
  '50': '0.05',
  '200': '0.2',
  '1000': '1',
};

export interface RuleContext {
  release: string;
  namespace: string;
}

/** The chart's full name for a release (spark.fullname without overrides). */
export function fullName(release: string, chart = 'spark'): string {
  return (release.includes(chart) ? release : `${release}-${chart}`).slice(0, 63).replace(/-+$/, '');
}

/** Placeholder → value, exactly as spark.alertRules computes them. */
export function ruleSubstitutions(values: Record<string, unknown>, ctx: RuleContext): Map<string, string> {
  const alerts = (values.alerts ?? {}) as Record<string, unknown>;
  const full = fullName(ctx.release);
  const jp = (alerts.jobPrefix as string) || full;
  const subs = new Map<string, string>();
  subs.set('namespace', ctx.namespace);
  subs.set('redisJob', (alerts.redisJob as string) || `${jp}-redis`);
  const jobs: string[] = [];
  for (const [key, dir] of Object.entries(COMPONENTS)) {
    subs.set(`${key}Job`, `${jp}-${dir}`);
    jobs.push(`${jp}-${dir}`);
  }
  subs.set('sparkJobs', jobs.sort().join('|'));
  subs.set('podPattern', `${full}-(coordinator|rollout|verifier|reward-synthesis|learner|redis)-.+`);
  subs.set('volumeClaimPattern', `checkpoints-${full}-learner-[0-9]+|data-${full}-redis-0`);
  const verifier = (values.verifier ?? {}) as { config?: { budgetMs?: number } };
  const budget = String(verifier.config?.budgetMs ?? 50);
  const le = VERIFIER_BUDGET_BUCKETS[budget];
  if (!le)
    throw new Error(`verifier.config.budgetMs ${budget} is not a bucket of spark_verifier_verify_seconds`);
  subs.set('verifierBudgetLe', le);
  for (const [k, v] of Object.entries(alerts)) subs.set(`alerts.${k}`, String(v));
  return subs;
}

/** A scalar of values.yaml as YAML would read it (numbers, quoted and plain strings). */
function scalar(text: string): unknown {
  const s = text.replace(/\s+#.*$/, '').trim();
  if (/^'.*'$/.test(s)) return s.slice(1, -1).replace(/''/g, "'");
  if (/^".*"$/.test(s)) return JSON.parse(s) as string;
  if (/^-?\d+(\.\d+)?$/.test(s)) return Number(s);
  return s;
}

/**
 * The values the rules depend on (`alerts.*` and `verifier.config.budgetMs`), read from values.yaml's text
 * (the deploy package has no YAML parser; the `alerts` block is flat `key: scalar` lines). The chart test
 * checks the result against helm's own rendering, so a misread shows up there.
 */
export function ruleValues(text: string): Record<string, unknown> {
  const lines = text.split('\n');
  const block = (name: string): string[] => {
    const start = lines.indexOf(`${name}:`);
    if (start < 0) return [];
    const out: string[] = [];
    for (const l of lines.slice(start + 1)) {
      if (/^\S/.test(l)) break;
      out.push(l);
    }
    return out;
  };
  const alerts: Record<string, unknown> = {};
  for (const l of block('alerts')) {
    const m = /^ {2}([A-Za-z][A-Za-z0-9]*):(.*)$/.exec(l);
    if (m) alerts[m[1]!] = scalar(m[2]!);
  }
  const budget = block('verifier')
    .map((l) => /^ {4}budgetMs:(.*)$/.exec(l))
    .find((m) => m !== null);
  return {
    alerts,
    verifier: { config: budget ? { budgetMs: scalar(budget[1]!) } : {} },
  };
}

/** The rules template with every placeholder filled; throws on a placeholder it does not know. */
export function renderRules(template: string, values: Record<string, unknown>, ctx: RuleContext): string {
  const subs = ruleSubstitutions(values, ctx);
  const out = template.replace(/\$\{([A-Za-z][A-Za-z0-9.]*)\}/g, (m, key: string) => {
    const v = subs.get(key);
    if (v === undefined) throw new Error(`unknown placeholder ${m} in the rules template`);
    return v;
  });
  return out;
}

export const RULES_TEMPLATE = join('deploy', 'helm', 'spark', 'files', 'prometheus-rules.yaml');
export const DEFAULT_CONTEXT: RuleContext = { release: 'spark', namespace: 'spark' };

/** deploy/prometheus/rules.yaml's content: the template filled with values.yaml's defaults. */
export function defaultRules(root: string): string {
  const template = readFileSync(join(root, RULES_TEMPLATE), 'utf8');
  const values = ruleValues(readFileSync(join(root, 'deploy', 'helm', 'spark', 'values.yaml'), 'utf8'));
  const body = template.replace(/^(#.*\n)+/, '');
  return (
    '# Generated by `node --import tsx deploy/generate.ts` from deploy/helm/spark/files/prometheus-rules.yaml\n' +
    "# (the chart's rules template) with the chart's default values, for release `spark` in namespace\n" +
    '# `spark`: edit the template, not this file. `promtool test rules rules.test.yaml` tests it; the chart\n' +
    '# renders the same rules from its values (alerts.*) as a PrometheusRule. Runbooks: docs/operations.md.\n' +
    renderRules(body, values, DEFAULT_CONTEXT)
  );
}
