// The reward benchmark (docs/method.md "Evaluation"): held-out judge items built from a CHECKPOINT-INDEPENDENT set
// of correct and incorrect answers — for each held-out problem the gold answer and a deterministic wrong
// answer (`wrongAnswerFor`: an integer gold moved by a hash-chosen ±1..3, other golds perturbed
// deterministically) — and their evaluation. Every problem yields three items:
//   pointwise yes/no (label "Yes" for the gold, "No" for the wrong answer),
//   pointwise a/b    (label "A" for the gold, "B" for the wrong answer),
//   pairwise         (gold and wrong answer, the gold in slot A or B; label = its slot),
// with the judged target alternating over problems so every style is balanced (half correct / half wrong,
// half A / half B). Templates are drawn per item with a seeded Rng over the recycling template sets, so the
// items are the same for every checkpoint. The same builders serve `spark eval --judge` and the
// coordinator's in-training evaluation (items are cluster PromptItems); reflection items (a held-out
// problem with its wrong answer, label = gold) are built the same way.
import type { PromptItem } from '@spark/contract';
import type { JudgeStyle } from '../recycling/index.js';
import { hash32, Rng, type Seed } from '../tasks/random.js';
import {
  pairwisePrompt,
  pointwisePrompt,
  reflectionPrompt,
  TEMPLATES,
  type TemplateVariant,
} from '../templates/index.js';
import { verdictStatus, type VerdictStatus } from './verdicts.js';
import type { EvalScorer, GenerateFn } from './problems.js';
import { formatTable, pct } from './summary.js';

/** A held-out problem judge items are built from. */
export interface JudgeSource {
  readonly id: string;
  readonly question: string;
  readonly answer: string;
  /** The task family or dataset (tagged `family:<name>` for per-family diagnostics). */
  readonly family?: string;
}

export interface JudgeItemOptions {
  /** Template wording (default `short`). */
  readonly variant?: TemplateVariant;
  /** Seed of the template draws (default 0). */
  readonly seed?: Seed;
}

const INTEGER = /^-?\d+$/;
const DECIMAL = /^-?\d+\.\d+$/;
const FRACTION = /^(-?\d+)\/(\d+)$/;

/**
 * A deterministic wrong answer for a gold answer (depends only on the gold string): integers move by
 * ±(1..3), decimals by ±1, fractions' numerators by +1; anything else gets " + 1" appended.
 */
export function wrongAnswerFor(gold: string): string {
  const g = gold.trim();
  const h = hash32(`spark/eval/wrong\u0000${g}`);
  const offset = 1 + (h % 3);
  const sign = (h >>> 8) & 1 ? 1 : -1;
  if (INTEGER.test(g) && g.length <= 15) return String(Number(g) + sign * offset);
  if (DECIMAL.test(g) && g.length <= 15) {
    const places = (g.split('.')[1] ?? '').length;
    return (Number(g) + sign).toFixed(places);
  }
  const f = FRACTION.exec(g);
  if (f && g.length <= 15) return `${Number(f[1]) + 1}/${f[2]}`;
  return `${g} + 1`;
}

/** The judge style of an eval judge item (in `tags[0]`). */
export type EvalJudgeStyle = JudgeStyle;
export const EVAL_JUDGE_STYLES: readonly EvalJudgeStyle[] = ['pointwise-yesno', 'pointwise-ab', 'pairwise'];

/**
 * Three judge items per problem (yes/no, a/b, pairwise), balanced across problems. `promptId`s are
 * `j-<style>-<problem id>`; `tags` = [style, target, ...diagnostic tags] with target `correct`/`incorrect`
 * (pointwise) or `slot-A`/`slot-B` (pairwise), then `set:standard`, `template:<id>`, `order:yes-first`
 * (pointwise: every recycling template lists Yes/A first), `wrong:near` (items showing the wrong answer)
 * and `family:<name>` when the source has one (judge-diagnostics.ts reads them).
 */
export function buildJudgeItems(problems: readonly JudgeSource[], opts: JudgeItemOptions = {}): PromptItem[] {
  const variant = opts.variant ?? 'short';
  const root = new Rng(`spark/eval/judge/${String(opts.seed ?? 0)}`);
  const items: PromptItem[] = [];
  problems.forEach((p, i) => {
    const rng = root.fork(p.id);
    const wrong = wrongAnswerFor(p.answer);
    const correctFirst = i % 2 === 0; // alternate targets so each style is balanced
    const family = p.family !== undefined ? [`family:${p.family.slice(0, 200)}`] : [];
    for (const style of EVAL_JUDGE_STYLES) {
      const template = rng.pick(TEMPLATES[style][variant]);
      const diag = ['set:standard', `template:${template.id}`];
      if (style === 'pairwise') {
        const goldInA = correctFirst;
        const [a, b] = goldInA ? [p.answer, wrong] : [wrong, p.answer];
        items.push({
          promptId: `j-${style}-${p.id}`,
          kind: 'pairwise',
          text: pairwisePrompt(template, p.question, a, b),
          label: goldInA ? 'A' : 'B',
          sourceGroupId: null,
          question: null,
          tags: [style, goldInA ? 'slot-A' : 'slot-B', ...diag, 'wrong:near', ...family],
        });
      } else {
        // yes/no and a/b alternate in opposite phase so a problem contributes one correct and one wrong
        const correct = style === 'pointwise-yesno' ? correctFirst : !correctFirst;
        const label = style === 'pointwise-yesno' ? (correct ? 'Yes' : 'No') : correct ? 'A' : 'B';
        items.push({
          promptId: `j-${style}-${p.id}`,
          kind: 'pointwise',
          text: pointwisePrompt(template, p.question, correct ? p.answer : wrong),
          label,
          sourceGroupId: null,
          question: null,
          tags: [
            style,
            correct ? 'correct' : 'incorrect',
            ...diag,
            'order:yes-first',
            ...(correct ? [] : ['wrong:near']),
            ...family,
          ],
        });
      }
    }
  });
  return items;
}

/**
 * One reflection item per problem: the question with its deterministic wrong answer shown (answer mode,
 * neutral or "it is wrong" wording alternating), label = the gold answer. `promptId` `r-<problem id>`.
 */
export function buildReflectionItems(
  problems: readonly JudgeSource[],
  opts: JudgeItemOptions = {},
): PromptItem[] {
  const variant = opts.variant ?? 'short';
  const root = new Rng(`spark/eval/reflection/${String(opts.seed ?? 0)}`);
  return problems.map((p, i) => {
    const tone = i % 2 === 0 ? 'neutral' : 'wrong';
    const template = root.fork(p.id).pick(TEMPLATES[`reflection-${tone}-answer`][variant]);
    return {
      promptId: `r-${p.id}`,
      kind: 'reflection' as const,
      text: reflectionPrompt(template, p.question, wrongAnswerFor(p.answer)),
      label: p.answer,
      sourceGroupId: null,
      question: p.question,
      tags: ['answer', tone],
    };
  });
}

/** One judged item. */
export interface JudgeResult {
  readonly promptId: string;
  readonly style: string;
  readonly label: string;
  readonly output: string;
  /** The boxed verdict (first box, trimmed), or null. */
  readonly verdict: string | null;
  readonly correct: boolean;
  /** The item's tags (style, target, diagnostic tags). */
  readonly tags?: readonly string[];
  /** Whether a verdict was produced (judge-diagnostics.ts `verdictStatus`). */
  readonly status?: VerdictStatus;
  /** log P(Yes|A) − log P(No|B) at the verdict under teacher forcing, when scored (`scoreJudgeMargins`). */
  readonly margin?: number | null;
}

/** Accuracy of one group of judge items. */
export interface JudgeGroupSummary {
  readonly count: number;
  readonly correct: number;
  readonly accuracy: number;
  /** Items whose output had no boxed verdict. */
  readonly missing: number;
}

/** The reward benchmark summary. */
export interface JudgeSummary {
  /** Per style: pointwise-yesno, pointwise-ab, pairwise. */
  readonly styles: Readonly<Record<string, JudgeGroupSummary>>;
  /** All pointwise items (yes/no + a/b). */
  readonly pointwise: JudgeGroupSummary;
  readonly pairwise: JudgeGroupSummary;
  /** The unweighted mean of the pointwise and pairwise accuracies. */
  readonly mean: number;
}

function group(rs: readonly { correct: boolean; verdict: string | null }[]): JudgeGroupSummary {
  const correct = rs.filter((r) => r.correct).length;
  return {
    count: rs.length,
    correct,
    accuracy: rs.length ? correct / rs.length : 0,
    missing: rs.filter((r) => r.verdict === null).length,
  };
}

/** Summarises judged items by style (style = the item's first tag). */
export function summarizeJudge(
  results: readonly Pick<JudgeResult, 'style' | 'correct' | 'verdict'>[],
): JudgeSummary {
  const styles: Record<string, JudgeGroupSummary> = {};
  for (const s of new Set(results.map((r) => r.style)))
    styles[s] = group(results.filter((r) => r.style === s));
  const pointwise = group(results.filter((r) => r.style.startsWith('pointwise')));
  const pairwise = group(results.filter((r) => r.style === 'pairwise'));
  const present = [pointwise, pairwise].filter((g) => g.count > 0);
  const mean = present.length ? present.reduce((s, g) => s + g.accuracy, 0) / present.length : 0;
  return { styles, pointwise, pairwise, mean };
}

/** Judges every item with the model (batched) and scores verdicts with the verifier's judge mode. */
export async function evaluateJudge(
  items: readonly PromptItem[],
  o: { readonly generate: GenerateFn; readonly scorer: EvalScorer; readonly batchSize?: number },
): Promise<JudgeResult[]> {
  const batch = o.batchSize ?? 32;
  if (!Number.isInteger(batch) || batch < 1)
    throw new RangeError(`batchSize must be a positive integer, got ${batch}`);
  const out: JudgeResult[] = [];
  for (let start = 0; start < items.length; start += batch) {
    const chunk = items.slice(start, start + batch);
    const outputs = await o.generate(chunk.map((it) => it.text));
    if (outputs.length !== chunk.length)
      throw new Error(`generate returned ${outputs.length} outputs for ${chunk.length} prompts`);
    for (const [i, it] of chunk.entries()) {
      const output = outputs[i] as string;
      const v = await o.scorer.verify(output, it.label, { mode: 'judge' });
      out.push({
        promptId: it.promptId,
        style: it.tags[0] ?? it.kind,
        label: it.label,
        output,
        verdict: v.extracted,
        correct: v.reward === 1,
        tags: it.tags,
        status: verdictStatus(output, it.tags[0] ?? it.kind),
      });
    }
  }
  return out;
}

/** The judge table: one row per style, then pointwise, pairwise and their mean. */
export function formatJudgeTable(s: JudgeSummary): string {
  const row = (name: string, g: JudgeGroupSummary): string[] => [
    name,
    String(g.count),
    String(g.correct),
    pct(g.accuracy),
    String(g.missing),
  ];
  const rows = Object.entries(s.styles)
    .filter(([k]) => k !== 'pairwise') // the pairwise row follows
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([k, g]) => row(k, g));
  rows.push(row('pointwise', s.pointwise), row('pairwise', s.pairwise));
  rows.push(['mean (pointwise, pairwise)', '', '', pct(s.mean), '']);
  return formatTable(['judge items', 'n', 'correct', 'accuracy', 'no verdict'], rows);
}
