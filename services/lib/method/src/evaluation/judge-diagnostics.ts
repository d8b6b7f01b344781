// Judge diagnostics for the reward benchmark (docs/evaluation.md "Judge diagnostics"): why a judge scores
// what it scores. On top of the standard items (judge.ts: gold vs a near miss, every option listed Yes/A
// first) the benchmark adds
//   - `no-first` items: each standard pointwise item again with its template's option-order counterpart
//     (templates/option-order.ts), same answer and target, so the two orders are compared item for item;
//   - `far` items: the gold vs a far-off wrong answer (`farAnswerFor`);
//   - `own` items: the gold vs a wrong answer the model itself gave (`collectOwnMistakes`).
// Every item carries diagnostic tags (`set:`, `template:`, `order:`, `wrong:`, `family:`), which is all the
// summary needs, so the coordinator's in-job evaluation (items travel as cluster PromptItems) and
// `spark eval --judge` share it. The graded score is the AUC of the verdict margin
// log P(Yes|A) − log P(No|B) under teacher forcing (`scoreJudgeMargins` over a `ScoreFn`; the checkpoint
// module implements one with the kernels' log-probs): it moves with small gains that greedy verdicts hide.
import type { PromptItem } from '@spark/contract';
import { hash32, Rng } from '../tasks/random.js';
import {
  NO_FIRST_TEMPLATES,
  pairwisePrompt,
  pointwisePrompt,
  problemPrompt,
  TEMPLATES,
  type Template,
  type TemplateVariant,
} from '../templates/index.js';
import {
  buildJudgeItems,
  EVAL_JUDGE_STYLES,
  wrongAnswerFor,
  type JudgeGroupSummary,
  type JudgeItemOptions,
  type JudgeResult,
  type JudgeSource,
} from './judge.js';
import type { EvalScorer } from './problems.js';
import { formatTable, pct } from './summary.js';
import { verdictOptions, type VerdictStatus } from './verdicts.js';

/** The value of a `key:value` tag, or undefined. */
export function tagValue(tags: readonly string[] | undefined, key: string): string | undefined {
  const t = tags?.find((x) => x.startsWith(`${key}:`));
  return t === undefined ? undefined : t.slice(key.length + 1);
}

/** The benchmark set of an item: `standard` (also for items without a `set:` tag), `no-first`, `far`, `own`. */
export function judgeSetOf(tags: readonly string[] | undefined): string {
  return tagValue(tags, 'set') ?? 'standard';
}

const INTEGER = /^-?\d+$/;
const DECIMAL = /^-?\d+\.\d+$/;
const FRACTION = /^(-?\d+)\/(\d+)$/;

/**
 * A deterministic far-off wrong answer (depends only on the gold string): integers and decimals move by
 * ±(max(40, 2·|gold|) + 0..19), fractions' numerators are multiplied by 10 and moved by 1, anything else
 * gets " + 100" appended. Never equivalent to the gold, and far outside the near misses (±1..3).
 */
export function farAnswerFor(gold: string): string {
  const g = gold.trim();
  const h = hash32(`spark/eval/far\u0000${g}`);
  const sign = (h >>> 8) & 1 ? 1 : -1;
  if ((INTEGER.test(g) || DECIMAL.test(g)) && g.length <= 15) {
    const n = Number(g);
    const offset = Math.max(40, Math.round(2 * Math.abs(n))) + (h % 20);
    const places = (g.split('.')[1] ?? '').length;
    return (n + sign * offset).toFixed(places);
  }
  const f = FRACTION.exec(g);
  if (f && g.length <= 15) return `${Number(f[1]) * 10 + 1}/${f[2]}`;
  return `${g} + 100`;
}

/** A wrong answer the model gave to a benchmark problem. */
export interface OwnMistake {
  readonly problemId: string;
  /** The extracted (last-box) answer, at most `MAX_OWN_ANSWER_CHARS`. */
  readonly answer: string;
}

/** Longest own answer kept (longer ones are skipped). */
export const MAX_OWN_ANSWER_CHARS = 200;

/** Samples one output per prompt; `draw` numbers the repetitions (a sampler seeds with it). */
export type SampleFn = (prompts: readonly string[], draw: number) => Promise<readonly string[]>;

/**
 * The model's own mistakes: every problem is asked `draws` times (the answer-format instruction appended,
 * as in evaluation); the first answer that has a box, is at most MAX_OWN_ANSWER_CHARS and is wrong
 * under the verifier is kept, at most one per problem.
 */
export async function collectOwnMistakes(
  problems: readonly JudgeSource[],
  o: {
    readonly sample: SampleFn;
    readonly draws: number;
    readonly scorer: EvalScorer;
    readonly variant?: TemplateVariant;
    readonly batchSize?: number;
  },
): Promise<{ mistakes: OwnMistake[]; samples: number; wrong: number }> {
  if (!Number.isInteger(o.draws) || o.draws < 1 || o.draws > 64)
    throw new RangeError(`draws must be an integer in [1, 64], got ${o.draws}`);
  const batch = o.batchSize ?? 32;
  const found = new Map<string, string>();
  let samples = 0;
  let wrong = 0;
  for (let draw = 0; draw < o.draws; draw++) {
    const open = problems.filter((p) => !found.has(p.id));
    for (let start = 0; start < open.length; start += batch) {
      const chunk = open.slice(start, start + batch);
      const outputs = await o.sample(
        chunk.map((p) => problemPrompt(p.question, o.variant ?? 'short')),
        draw,
      );
      if (outputs.length !== chunk.length)
        throw new Error(`sample returned ${outputs.length} outputs for ${chunk.length} prompts`);
      for (const [i, p] of chunk.entries()) {
        samples++;
        const v = await o.scorer.verify(outputs[i] as string, p.answer, { mode: 'math' });
        const answer = v.extracted?.trim() ?? '';
        if (v.reward === 1 || answer === '') continue;
        wrong++;
        if (answer.length <= MAX_OWN_ANSWER_CHARS && !found.has(p.id)) found.set(p.id, answer);
      }
    }
  }
  const mistakes = problems
    .filter((p) => found.has(p.id))
    .map((p) => ({ problemId: p.id, answer: found.get(p.id) as string }));
  return { mistakes, samples, wrong };
}

/** Options of the full benchmark (judge.ts's options plus the diagnostic sets). */
export interface JudgeBenchmarkOptions extends JudgeItemOptions {
  /** Add the option-order counterparts of the pointwise items (default true). */
  readonly noFirst?: boolean;
  /** Add the far-off wrong-answer items (default true). */
  readonly far?: boolean;
  /** The model's own mistakes to judge (default none). */
  readonly own?: readonly OwnMistake[];
}

function templateIndex(style: 'pointwise-yesno' | 'pointwise-ab', t: Template): number {
  return TEMPLATES[style][t.variant].findIndex((x) => x.id === t.id);
}

/**
 * The standard items (buildJudgeItems) followed by the diagnostic sets: `no-first` (2 per problem),
 * `far` (3 per problem: yes/no and a/b on the far answer, pairwise gold vs far) and `own` (3 per mistake,
 * the same on the model's answer). Diagnostic items draw their templates from their own seeded streams,
 * so the standard items stay exactly those of buildJudgeItems.
 */
export function buildJudgeBenchmark(
  problems: readonly JudgeSource[],
  opts: JudgeBenchmarkOptions = {},
): PromptItem[] {
  const variant = opts.variant ?? 'short';
  const seed = String(opts.seed ?? 0);
  const standard = buildJudgeItems(problems, opts);
  const out = [...standard];
  const byId = new Map(problems.map((p) => [p.id, p]));
  const familyTags = (p: JudgeSource): string[] =>
    p.family !== undefined ? [`family:${p.family.slice(0, 200)}`] : [];
  if (opts.noFirst !== false) {
    problems.forEach((p, i) => {
      const correctFirst = i % 2 === 0;
      for (const style of ['pointwise-yesno', 'pointwise-ab'] as const) {
        const std = standard.find((it) => it.promptId === `j-${style}-${p.id}`);
        const id = tagValue(std?.tags, 'template');
        const original = TEMPLATES[style][variant].find((t) => t.id === id);
        if (!std || !original) continue;
        const template = NO_FIRST_TEMPLATES[style][variant][templateIndex(style, original)] as Template;
        const correct = style === 'pointwise-yesno' ? correctFirst : !correctFirst;
        out.push({
          ...std,
          promptId: `j-${style}-no-first-${p.id}`,
          text: pointwisePrompt(template, p.question, correct ? p.answer : wrongAnswerFor(p.answer)),
          tags: [
            style,
            correct ? 'correct' : 'incorrect',
            'set:no-first',
            `template:${template.id}`,
            'order:no-first',
            ...(correct ? [] : ['wrong:near']),
            ...familyTags(p),
          ],
        });
      }
    });
  }
  const wrongSet = (set: 'far' | 'own', p: JudgeSource, wrong: string, i: number): void => {
    const rng = new Rng(`spark/eval/judge-${set}/${seed}`).fork(p.id);
    for (const style of EVAL_JUDGE_STYLES) {
      const template = rng.pick(TEMPLATES[style][variant]);
      const common = ['set:' + set, `template:${template.id}`];
      if (style === 'pairwise') {
        const goldInA = i % 2 === 0;
        const [a, b] = goldInA ? [p.answer, wrong] : [wrong, p.answer];
        out.push({
          promptId: `j-${style}-${set}-${p.id}`,
          kind: 'pairwise',
          text: pairwisePrompt(template, p.question, a, b),
          label: goldInA ? 'A' : 'B',
          sourceGroupId: null,
          question: null,
          tags: [style, goldInA ? 'slot-A' : 'slot-B', ...common, `wrong:${set}`, ...familyTags(p)],
        });
      } else {
        out.push({
          promptId: `j-${style}-${set}-${p.id}`,
          kind: 'pointwise',
          text: pointwisePrompt(template, p.question, wrong),
          label: verdictOptions(style)[1],
          sourceGroupId: null,
          question: null,
          tags: [style, 'incorrect', ...common, 'order:yes-first', `wrong:${set}`, ...familyTags(p)],
        });
      }
    }
  };
  if (opts.far !== false) problems.forEach((p, i) => wrongSet('far', p, farAnswerFor(p.answer), i));
  (opts.own ?? []).forEach((m, i) => {
    const p = byId.get(m.problemId);
    if (p) wrongSet('own', p, m.answer, i);
  });
  return out;
}

// ---- the graded score ----------------------------------------------------------------------------

/**
 * One teacher-forced verdict: the judge prompt, the model's own output up to and including the opener of
 * its verdict box, and the candidate continuations (`Yes}` / `No}` or `A}` / `B}`).
 */
export interface VerdictScoreRequest {
  readonly prompt: string;
  readonly prefix: string;
  readonly candidates: readonly string[];
}

/** Total log-probability of each candidate per request; null when the request does not fit the model. */
export type ScoreFn = (
  requests: readonly VerdictScoreRequest[],
) => Promise<readonly (readonly number[] | null)[]>;

const BOX = '\\boxed{';

/**
 * Where the verdict is read: the output up to its first `\boxed{` (the box the verifier reads), or the
 * whole output followed by `\boxed{` when it has none.
 */
export function verdictPrefix(output: string): string {
  const at = output.indexOf(BOX);
  return at >= 0 ? output.slice(0, at + BOX.length) : `${output}${BOX}`;
}

/**
 * Adds `margin` = log P(positive verdict) − log P(negative verdict) (Yes/A minus No/B, each followed by
 * the closing brace) to each result; `items[i]` is the item of `results[i]`. Null where the request did not
 * fit the model's context.
 */
export async function scoreJudgeMargins(
  items: readonly PromptItem[],
  results: readonly JudgeResult[],
  score: ScoreFn,
  batchSize = 32,
): Promise<JudgeResult[]> {
  if (items.length !== results.length) throw new Error(`${items.length} items for ${results.length} results`);
  const out: JudgeResult[] = [];
  for (let start = 0; start < items.length; start += batchSize) {
    const chunk = items.slice(start, start + batchSize);
    const requests = chunk.map((it, i) => ({
      prompt: it.text,
      prefix: verdictPrefix((results[start + i] as JudgeResult).output),
      candidates: verdictOptions(it.tags[0] ?? it.kind).map((v) => `${v}}`),
    }));
    const scores = await score(requests);
    if (scores.length !== requests.length)
      throw new Error(`score returned ${scores.length} results for ${requests.length} requests`);
    scores.forEach((s, i) => {
      const r = results[start + i] as JudgeResult;
      out.push({ ...r, margin: s ? (s[0] as number) - (s[1] as number) : null });
    });
  }
  return out;
}

/**
 * The area under the ROC curve of scores separating positives from negatives: the probability that a
 * random positive scores above a random negative, ties counting half (Mann–Whitney U with mid-ranks).
 * Null when either side is empty. NaN scores are dropped.
 */
export function rocAuc(positives: readonly number[], negatives: readonly number[]): number | null {
  const pos = positives.filter((x) => !Number.isNaN(x));
  const neg = negatives.filter((x) => !Number.isNaN(x));
  if (pos.length === 0 || neg.length === 0) return null;
  const all = [...pos.map((v) => ({ v, p: true })), ...neg.map((v) => ({ v, p: false }))].sort((a, b) =>
    a.v < b.v ? -1 : a.v > b.v ? 1 : 0,
  );
  let rankSum = 0;
  for (let i = 0; i < all.length;) {
    let j = i;
    while (j + 1 < all.length && (all[j + 1] as { v: number }).v === (all[i] as { v: number }).v) j++;
    const mid = (i + j) / 2 + 1; // ranks are 1-based
    for (let k = i; k <= j; k++) if ((all[k] as { p: boolean }).p) rankSum += mid;
    i = j + 1;
  }
  const u = rankSum - (pos.length * (pos.length + 1)) / 2;
  return u / (pos.length * neg.length);
}

// ---- the summary ---------------------------------------------------------------------------------

/** Accuracy of a group with the share of verdicts naming the first option (Yes or A). */
export interface DiagGroup extends JudgeGroupSummary {
  /** Share of items whose verdict is Yes (yes/no) or A (a/b, pairwise): 50 % on balanced targets for a perfect judge. */
  readonly yesShare: number;
}

/** How often a verdict was produced, per style (`verdictStatus`). */
export interface VerdictCounts {
  readonly count: number;
  readonly verdict: number;
  readonly none: number;
  readonly boxBeforeVerdict: number;
  readonly invalid: number;
}

/** The graded score: AUCs of the verdict margin. */
export interface JudgeAuc {
  /** Items with a margin. */
  readonly scored: number;
  /** Per style on the standard items: correct vs near-miss targets (pointwise), gold in A vs in B (pairwise). */
  readonly styles: Readonly<Record<string, number | null>>;
  /** Per wrong-answer kind and pointwise style: the standard correct-target items against items of that kind. */
  readonly wrongAnswers: Readonly<Record<string, Readonly<Record<string, number | null>>>>;
}

export interface JudgeDiagnostics {
  /** Items per set (standard, no-first, far, own). */
  readonly sets: Readonly<Record<string, number>>;
  /** Standard items, per task family. */
  readonly byFamily: Readonly<Record<string, DiagGroup>>;
  /** Standard and no-first items, per template id. */
  readonly byTemplate: Readonly<Record<string, DiagGroup>>;
  /**
   * Option order. Pointwise styles (and `pointwise`, both): `yes-first` (the standard items) against
   * `no-first` (the same items with the options swapped). Pairwise: `gold-A` against `gold-B`.
   */
  readonly byOrder: Readonly<Record<string, Readonly<Record<string, DiagGroup>>>>;
  /** Standard items: verdict production per style. */
  readonly verdicts: Readonly<Record<string, VerdictCounts>>;
  /** Items that show a wrong answer, per kind (near, far, own): pointwise (target incorrect) and pairwise. */
  readonly wrongAnswers: Readonly<
    Record<string, { readonly pointwise: DiagGroup; readonly pairwise: DiagGroup }>
  >;
  /** Null when no item was scored. */
  readonly auc: JudgeAuc | null;
}

type Judged = Pick<JudgeResult, 'style' | 'correct' | 'verdict' | 'tags' | 'status' | 'margin'>;

function diagGroup(rs: readonly Judged[]): DiagGroup {
  const correct = rs.filter((r) => r.correct).length;
  const yes = rs.filter((r) => r.verdict === verdictOptions(r.style)[0]).length;
  return {
    count: rs.length,
    correct,
    accuracy: rs.length ? correct / rs.length : 0,
    missing: rs.filter((r) => r.verdict === null).length,
    yesShare: rs.length ? yes / rs.length : 0,
  };
}

function groupBy(rs: readonly Judged[], key: (r: Judged) => string | undefined): Record<string, DiagGroup> {
  const m = new Map<string, Judged[]>();
  for (const r of rs) {
    const k = key(r);
    if (k !== undefined) m.set(k, [...(m.get(k) ?? []), r]);
  }
  return Object.fromEntries([...m.keys()].sort().map((k) => [k, diagGroup(m.get(k) ?? [])]));
}

const isPointwise = (r: Judged): boolean => r.style.startsWith('pointwise');
const margins = (rs: readonly Judged[]): number[] =>
  rs.flatMap((r) => (typeof r.margin === 'number' ? [r.margin] : []));

/** The diagnostics of judged items (results of evaluateJudge, optionally with margins). */
export function diagnoseJudge(results: readonly Judged[]): JudgeDiagnostics {
  const sets: Record<string, number> = {};
  for (const r of results) sets[judgeSetOf(r.tags)] = (sets[judgeSetOf(r.tags)] ?? 0) + 1;
  const std = results.filter((r) => judgeSetOf(r.tags) === 'standard');
  const ordered = results.filter((r) => ['standard', 'no-first'].includes(judgeSetOf(r.tags)));
  const byOrder: Record<string, Record<string, DiagGroup>> = {};
  for (const style of ['pointwise-yesno', 'pointwise-ab']) {
    byOrder[style] = groupBy(
      ordered.filter((r) => r.style === style),
      (r) => tagValue(r.tags, 'order') ?? 'yes-first',
    );
  }
  byOrder.pointwise = groupBy(ordered.filter(isPointwise), (r) => tagValue(r.tags, 'order') ?? 'yes-first');
  byOrder.pairwise = groupBy(
    std.filter((r) => r.style === 'pairwise'),
    (r) => (r.tags?.[1] === 'slot-B' ? 'gold-B' : 'gold-A'),
  );
  const verdicts: Record<string, VerdictCounts> = {};
  for (const style of [...new Set(std.map((r) => r.style))].sort()) {
    const rs = std.filter((r) => r.style === style);
    const n = (s: VerdictStatus): number => rs.filter((r) => r.status === s).length;
    verdicts[style] = {
      count: rs.length,
      verdict: n('verdict'),
      none: n('none'),
      boxBeforeVerdict: n('box-before-verdict'),
      invalid: n('invalid'),
    };
  }
  const wrongAnswers: Record<string, { pointwise: DiagGroup; pairwise: DiagGroup }> = {};
  for (const kind of ['near', 'far', 'own']) {
    // near misses: the standard items only (the no-first copies repeat them)
    const rs = results.filter(
      (r) => tagValue(r.tags, 'wrong') === kind && (kind !== 'near' || judgeSetOf(r.tags) === 'standard'),
    );
    wrongAnswers[kind] = {
      pointwise: diagGroup(rs.filter(isPointwise)),
      pairwise: diagGroup(rs.filter((r) => r.style === 'pairwise')),
    };
  }
  const scored = results.filter((r) => typeof r.margin === 'number').length;
  let auc: JudgeAuc | null = null;
  if (scored > 0) {
    const styles: Record<string, number | null> = {};
    for (const style of EVAL_JUDGE_STYLES) {
      const rs = std.filter((r) => r.style === style);
      const positive = (r: Judged): boolean => r.tags?.[1] === 'correct' || r.tags?.[1] === 'slot-A';
      styles[style] = rocAuc(margins(rs.filter(positive)), margins(rs.filter((r) => !positive(r))));
    }
    const wrong: Record<string, Record<string, number | null>> = {};
    for (const kind of ['near', 'far', 'own']) {
      const byStyle: Record<string, number | null> = {};
      wrong[kind] = byStyle;
      for (const style of ['pointwise-yesno', 'pointwise-ab']) {
        const pos = std.filter((r) => r.style === style && r.tags?.[1] === 'correct');
        const neg = results.filter(
          (r) =>
            r.style === style &&
            tagValue(r.tags, 'wrong') === kind &&
            (kind !== 'near' || judgeSetOf(r.tags) === 'standard'),
        );
        byStyle[style] = rocAuc(margins(pos), margins(neg));
      }
    }
    auc = { scored, styles, wrongAnswers: wrong };
  }
  return {
    sets,
    byFamily: groupBy(std, (r) => tagValue(r.tags, 'family')),
    byTemplate: groupBy(ordered, (r) => tagValue(r.tags, 'template')),
    byOrder,
    verdicts,
    wrongAnswers,
    auc,
  };
}

const aucCell = (v: number | null | undefined): string =>
  v === null || v === undefined ? '—' : v.toFixed(3);

/** The printed diagnostics: option order, verdict production, wrong-answer kinds, AUC, per family/template. */
export function formatJudgeDiagnostics(d: JudgeDiagnostics): string {
  const row = (name: string, g: DiagGroup | undefined): string[] =>
    g
      ? [name, String(g.count), pct(g.accuracy), pct(g.yesShare), String(g.missing)]
      : [name, '0', '—', '—', '—'];
  const head = ['', 'n', 'accuracy', 'Yes/A share', 'no verdict'];
  const orderRows: string[][] = [];
  for (const [style, groups] of Object.entries(d.byOrder))
    for (const [order, g] of Object.entries(groups)) orderRows.push(row(`${style} ${order}`, g));
  const wrongRows: string[][] = [];
  for (const [kind, g] of Object.entries(d.wrongAnswers)) {
    wrongRows.push(row(`${kind} pointwise`, g.pointwise), row(`${kind} pairwise`, g.pairwise));
  }
  const verdictRows = Object.entries(d.verdicts).map(([style, v]) => [
    style,
    String(v.count),
    String(v.verdict),
    String(v.none),
    String(v.boxBeforeVerdict),
    String(v.invalid),
  ]);
  const parts = [
    formatTable(['option order', ...head.slice(1)], orderRows),
    '',
    formatTable(
      ['verdicts (standard items)', 'n', 'verdict', 'no box', 'box before verdict', 'other box'],
      verdictRows,
    ),
    '',
    formatTable(['wrong answer shown', ...head.slice(1)], wrongRows),
  ];
  if (d.auc) {
    const a = d.auc;
    parts.push(
      '',
      formatTable(
        ['margin AUC', 'pointwise-yesno', 'pointwise-ab', 'pairwise'],
        [
          [
            'standard (near misses)',
            aucCell(a.styles['pointwise-yesno']),
            aucCell(a.styles['pointwise-ab']),
            aucCell(a.styles.pairwise),
          ],
          ...['far', 'own'].map((k) => [
            `correct vs ${k}`,
            aucCell(a.wrongAnswers[k]?.['pointwise-yesno']),
            aucCell(a.wrongAnswers[k]?.['pointwise-ab']),
            '',
          ]),
        ],
      ),
      `(${a.scored} items scored; AUC 0.5 = chance)`,
    );
  }
  parts.push(
    '',
    formatTable(
      ['family (standard items)', ...head.slice(1)],
      Object.entries(d.byFamily).map(([k, g]) => row(k, g)),
    ),
    '',
    formatTable(
      ['template', ...head.slice(1)],
      Object.entries(d.byTemplate).map(([k, g]) => row(k, g)),
    ),
  );
  return parts.join('\n');
}
