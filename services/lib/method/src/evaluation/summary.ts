// Summary semantics of reasoning evaluation (docs/method.md "Evaluation", as the reference's scoring does): per
// dataset, accuracy = correct / records (a record without an extracted answer counts as wrong and is also
// counted as "missing"), and the headline figure is the UNWEIGHTED mean of the per-dataset accuracies, so
// a small benchmark weighs as much as a large one. `overall` (micro accuracy over all records) is reported
// beside it for reference. Also: the per-record result shape written to results.jsonl, and a fixed-width
// table printer shared by `spark eval`, `spark score` and the coordinator's logs.

/** One evaluated (or re-scored) record, as written to results.jsonl. */
export interface ProblemResult {
  readonly dataset: string;
  readonly id: string;
  readonly problem: string;
  /** The ground truth. */
  readonly answer: string;
  /** The model's raw output (the final one when self-reflection ran). */
  readonly output: string;
  /** The answer the verifier compared (last `\boxed{}`), or null when there is none. */
  readonly extracted: string | null;
  readonly correct: boolean;
  /** The verifier's reason (e.g. `boxed:numeric-exact`, `no-answer`). */
  readonly reason: string;
}

/** Accuracy of one dataset. */
export interface DatasetSummary {
  readonly dataset: string;
  readonly count: number;
  readonly correct: number;
  /** correct / count, in [0, 1]. */
  readonly accuracy: number;
  /** Records without an extracted answer (counted as wrong). */
  readonly missing: number;
}

/** The summary of a set of results. */
export interface AccuracySummary {
  /** Per dataset, sorted by name. */
  readonly datasets: readonly DatasetSummary[];
  /** The unweighted mean of the per-dataset accuracies (0 when there is no dataset). */
  readonly mean: number;
  /** Micro accuracy over all records. */
  readonly overall: number;
  readonly count: number;
  readonly correct: number;
  readonly missing: number;
}

/** The minimal fields `summarize` reads. */
export interface Scored {
  readonly dataset: string;
  readonly extracted: string | null;
  readonly correct: boolean;
}

/** Per-dataset accuracy, missing answers, unweighted mean and overall accuracy. */
export function summarize(results: Iterable<Scored>): AccuracySummary {
  const by = new Map<string, { count: number; correct: number; missing: number }>();
  for (const r of results) {
    let d = by.get(r.dataset);
    if (!d) by.set(r.dataset, (d = { count: 0, correct: 0, missing: 0 }));
    d.count++;
    if (r.correct) d.correct++;
    if (r.extracted === null || r.extracted.trim() === '') d.missing++;
  }
  const datasets = [...by.entries()]
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([dataset, d]) => ({ dataset, ...d, accuracy: d.count ? d.correct / d.count : 0 }));
  const count = datasets.reduce((s, d) => s + d.count, 0);
  const correct = datasets.reduce((s, d) => s + d.correct, 0);
  const missing = datasets.reduce((s, d) => s + d.missing, 0);
  const mean = datasets.length ? datasets.reduce((s, d) => s + d.accuracy, 0) / datasets.length : 0;
  return { datasets, mean, overall: count ? correct / count : 0, count, correct, missing };
}

/** A percentage with one decimal. */
export function pct(x: number): string {
  return `${(100 * x).toFixed(1)}%`;
}

/** Renders rows as a left-aligned first column and right-aligned others. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

/**
 * The accuracy table: one row per dataset, then `mean` (unweighted over datasets) and `overall`. With a
 * second summary (`before`: the same records without self-reflection) an extra column shows it.
 */
export function formatAccuracyTable(s: AccuracySummary, before?: AccuracySummary): string {
  const header = before
    ? ['dataset', 'n', 'no-reflect', 'reflect', 'missing']
    : ['dataset', 'n', 'correct', 'accuracy', 'missing'];
  const prior = new Map((before?.datasets ?? []).map((d) => [d.dataset, d]));
  const rows = s.datasets.map((d) =>
    before
      ? [
          d.dataset,
          String(d.count),
          pct(prior.get(d.dataset)?.accuracy ?? 0),
          pct(d.accuracy),
          String(d.missing),
        ]
      : [d.dataset, String(d.count), String(d.correct), pct(d.accuracy), String(d.missing)],
  );
  rows.push(
    before
      ? ['mean (unweighted)', String(s.count), pct(before.mean), pct(s.mean), String(s.missing)]
      : ['mean (unweighted)', String(s.count), String(s.correct), pct(s.mean), String(s.missing)],
  );
  rows.push(
    before
      ? ['overall', String(s.count), pct(before.overall), pct(s.overall), String(s.missing)]
      : ['overall', String(s.count), String(s.correct), pct(s.overall), String(s.missing)],
  );
  return formatTable(header, rows);
}
