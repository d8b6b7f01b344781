// The demo's results, computed only from a job's streamed events: the before/after-RL table (held-out
// answer accuracy, pointwise and pairwise judge accuracy, reflection success — from the EVAL events), the
// training curves (reward per sample kind from PHASE events, eval accuracies, both vs step) and the
// machine-readable summary written as results.json.
//
// Which EVAL is which: evals are taken in sequence order. "after RL" is the last one. "before RL" is the
// last eval at step 0 (the coordinator evaluates after warm-up, before the first RL step); when the job
// reported an earlier step-0 eval too (a pre-warm-up baseline), that first one is the "baseline".
import { JobEventType, type JobEvent } from '@spark/protocol';

import { phaseName } from './progress.js';
import type { Panel, Series } from './svg.js';

/** The four headline figures and the kind names the coordinator's metric keys use for them. */
export const HEADLINE = [
  { key: 'answer', label: 'held-out answer accuracy', kind: 'problem' },
  { key: 'pointwise', label: 'pointwise judge accuracy', kind: 'pointwise' },
  { key: 'pairwise', label: 'pairwise judge accuracy', kind: 'pairwise' },
  { key: 'reflection', label: 'reflection success', kind: 'reflection' },
] as const;

export type HeadlineKey = (typeof HEADLINE)[number]['key'];

/**
 * The accuracy of `kind` in an EVAL event's metrics. Exact names first (`accuracy/<kind>`,
 * `<kind>/accuracy`, `<kind>_accuracy`, `accuracy_<kind>`, `eval/<kind>/accuracy`), then the shortest key
 * naming both the kind and "acc"; undefined when the eval did not report it.
 */
export function accuracyOf(metrics: Readonly<Record<string, number>>, kind: string): number | undefined {
  // The coordinator's names: answer_accuracy, pointwise_accuracy, pairwise_accuracy, reflection_accuracy.
  const own = kind === 'problem' ? ['answer_accuracy'] : [`${kind}_accuracy`];
  for (const k of [
    ...own,
    `accuracy/${kind}`,
    `${kind}/accuracy`,
    `${kind}_accuracy`,
    `accuracy_${kind}`,
    `eval/${kind}/accuracy`,
    `${kind}.accuracy`,
    `accuracy.${kind}`,
  ]) {
    const v = metrics[k];
    if (typeof v === 'number') return v;
  }
  const fuzzy = Object.keys(metrics)
    .filter((k) => k.toLowerCase().includes(kind) && /acc/i.test(k) && !/count|total|n_|num/i.test(k))
    .sort((a, b) => a.length - b.length)[0];
  return fuzzy === undefined ? undefined : metrics[fuzzy];
}

export interface EvalPoint {
  readonly seq: number;
  readonly step: number;
  readonly metrics: Readonly<Record<string, number>>;
  readonly message: string;
}

export interface ResultRow {
  readonly key: HeadlineKey;
  readonly label: string;
  readonly baseline: number | null;
  readonly before: number | null;
  readonly after: number | null;
  /** after − before, when both are known. */
  readonly change: number | null;
}

/** A judge-diagnostic row (an EVAL metric of the coordinator's judgeDiagnosticMetrics, before/after RL). */
export interface DiagnosticRow {
  readonly key: string;
  readonly label: string;
  readonly baseline: number | null;
  readonly before: number | null;
  readonly after: number | null;
  readonly change: number | null;
}

/** The judge diagnostics shown beside the headline table (docs/evaluation.md "Judge diagnostics"). */
export const JUDGE_DIAGNOSTICS: readonly { readonly key: string; readonly label: string }[] = [
  { key: 'pointwise_accuracy.yes_first', label: 'pointwise, options Yes/A first' },
  { key: 'pointwise_accuracy.no_first', label: 'pointwise, options No/B first' },
  { key: 'pointwise_yes_share.yes_first', label: 'Yes/A verdicts, Yes/A listed first' },
  { key: 'pointwise_yes_share.no_first', label: 'Yes/A verdicts, No/B listed first' },
  { key: 'pairwise_accuracy.gold_a', label: 'pairwise, gold in A' },
  { key: 'pairwise_accuracy.gold_b', label: 'pairwise, gold in B' },
  { key: 'pointwise_accuracy.near', label: 'pointwise on near-miss answers' },
  { key: 'pointwise_accuracy.far', label: 'pointwise on far-off answers' },
  { key: 'judge_no_verdict', label: 'judge outputs without a box' },
  { key: 'judge_box_before_verdict', label: 'a box before the verdict' },
];

export interface JobResults {
  readonly rows: readonly ResultRow[];
  /** The judge diagnostics reported by the evals (rows whose metric no eval reported are left out). */
  readonly judgeDiagnostics: readonly DiagnosticRow[];
  readonly evals: readonly EvalPoint[];
  /** Which evals the columns came from (sequence numbers), null when absent. */
  readonly columns: {
    readonly baseline: number | null;
    readonly before: number | null;
    readonly after: number | null;
  };
}

/** The EVAL events of a job, in sequence order. */
export function evalPoints(events: readonly JobEvent[]): EvalPoint[] {
  return events
    .filter((e) => e.type === JobEventType.JOB_EVENT_TYPE_EVAL)
    .sort((a, b) => a.seq - b.seq)
    .map((e) => ({ seq: e.seq, step: e.step, metrics: e.metrics, message: e.message }));
}

/** The before/after table from a job's events. */
export function computeResults(events: readonly JobEvent[]): JobResults {
  const evals = evalPoints(events);
  const atZero = evals.filter((e) => e.step === 0);
  const labelled = (re: RegExp) => evals.find((e) => re.test(e.message));
  const before = labelled(/before[- ]?rl|after[- ]?warm/i) ?? atZero[atZero.length - 1] ?? evals[0];
  const baseline =
    labelled(/baseline|before[- ]?warm|pre[- ]?warm/i) ??
    (atZero.length >= 2 && atZero[0] !== before ? atZero[0] : undefined);
  const lastEval = evals[evals.length - 1];
  const after = lastEval && lastEval !== before ? lastEval : undefined;
  const rows: ResultRow[] = HEADLINE.map((h) => {
    const b = before ? (accuracyOf(before.metrics, h.kind) ?? null) : null;
    const a = after ? (accuracyOf(after.metrics, h.kind) ?? null) : null;
    return {
      key: h.key,
      label: h.label,
      baseline: baseline ? (accuracyOf(baseline.metrics, h.kind) ?? null) : null,
      before: b,
      after: a,
      change: a !== null && b !== null ? a - b : null,
    };
  });
  const value = (e: EvalPoint | undefined, key: string): number | null => {
    const v = e?.metrics[key];
    return typeof v === 'number' ? v : null;
  };
  const judgeDiagnostics = JUDGE_DIAGNOSTICS.map((d) => {
    const b = value(before, d.key);
    const a = value(after, d.key);
    return {
      key: d.key,
      label: d.label,
      baseline: value(baseline, d.key),
      before: b,
      after: a,
      change: a !== null && b !== null ? a - b : null,
    };
  }).filter((r) => r.baseline !== null || r.before !== null || r.after !== null);
  return {
    rows,
    judgeDiagnostics,
    evals,
    columns: { baseline: baseline?.seq ?? null, before: before?.seq ?? null, after: after?.seq ?? null },
  };
}

function cell(v: number | null, signed = false): string {
  if (v === null) return '—';
  const s = (v * 100).toFixed(1);
  return signed && v >= 0 ? `+${s}` : s;
}

/** The results as a fixed-width text table (accuracies in percent). */
export function formatResultsTable(results: Pick<JobResults, 'rows'>): string {
  return formatRows(results.rows, 'metric (%)');
}

/** The judge diagnostics as a fixed-width text table (percent), or '' when no eval reported them. */
export function formatDiagnosticsTable(results: Pick<JobResults, 'judgeDiagnostics'>): string {
  return results.judgeDiagnostics.length ? formatRows(results.judgeDiagnostics, 'judge diagnostics (%)') : '';
}

function formatRows(rows: readonly DiagnosticRow[], title: string): string {
  const withBaseline = rows.some((r) => r.baseline !== null);
  const head = [title, ...(withBaseline ? ['pre-warm-up'] : []), 'before RL', 'after RL', 'change'];
  const body = rows.map((r) => [
    r.label,
    ...(withBaseline ? [cell(r.baseline)] : []),
    cell(r.before),
    cell(r.after),
    cell(r.change, true),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)));
  const line = (cols: readonly string[]) =>
    cols.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  ');
  return [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...body.map(line)].join('\n');
}

/** Mean reward per kind of every PHASE event (metric keys naming a kind and "reward"). */
export function rewardSeries(events: readonly JobEvent[]): Series[] {
  const byName = new Map<string, [number, number][]>();
  for (const e of events) {
    if (e.type !== JobEventType.JOB_EVENT_TYPE_PHASE) continue;
    const phase = phaseName(e);
    if (phase !== 'policy' && phase !== 'reward') continue;
    for (const kind of ['problem', 'pointwise', 'pairwise', 'reflection']) {
      const key = Object.keys(e.metrics)
        .filter((k) => k.toLowerCase().includes(kind) && /reward/i.test(k) && !/std|count|min|max/i.test(k))
        .sort((a, b) => a.length - b.length)[0];
      const v = key === undefined ? undefined : e.metrics[key];
      if (v === undefined) continue;
      const name = `${kind} reward`;
      const pts = byName.get(name) ?? [];
      pts.push([e.step, v]);
      byName.set(name, pts);
    }
    // A phase that reports only an overall reward still gets a curve.
    const perKind = Object.keys(e.metrics).some(
      (k) => /reward/i.test(k) && /problem|pointwise|pairwise|reflection/.test(k),
    );
    const overall = e.metrics.reward_mean ?? e.metrics['reward/mean'] ?? e.metrics.reward;
    if (overall !== undefined && !perKind) {
      const name = `${phase} reward (all)`;
      const pts = byName.get(name) ?? [];
      pts.push([e.step, overall]);
      byName.set(name, pts);
    }
  }
  return [...byName].map(([name, points]) => ({ name, points }));
}

/** Eval accuracy per headline kind vs step. */
export function evalSeries(events: readonly JobEvent[]): Series[] {
  const evals = evalPoints(events);
  return HEADLINE.map((h) => ({
    name: h.label.replace(/ accuracy$/, ''),
    points: evals.flatMap((e) => {
      const v = accuracyOf(e.metrics, h.kind);
      return v === undefined ? [] : [[e.step, v] as [number, number]];
    }),
  })).filter((s) => s.points.length > 0);
}

/** The two panels of the demo plot. */
export function curvePanels(events: readonly JobEvent[]): Panel[] {
  return [
    {
      title: 'Training reward per sample kind',
      xLabel: 'step',
      yLabel: 'mean reward',
      series: rewardSeries(events),
      integerX: true,
      yRange: [0, 1],
    },
    {
      title: 'Held-out evaluation',
      xLabel: 'step',
      yLabel: 'accuracy',
      series: evalSeries(events),
      integerX: true,
      yRange: [0, 1],
    },
  ];
}
