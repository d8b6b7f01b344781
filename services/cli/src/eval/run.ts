// The evaluation runs behind `spark eval` (and the benchmark): problem evaluation (with optional
// self-reflection) and the reward benchmark over a loaded generator, producing the summary.json object,
// the per-record results, and the printed tables. Writing files is the command's business.
import {
  buildJudgeBenchmark,
  collectOwnMistakes,
  diagnoseJudge,
  evaluateJudge,
  formatJudgeDiagnostics,
  judgeSetOf,
  scoreJudgeMargins,
  evaluateProblems,
  formatAccuracyTable,
  formatJudgeTable,
  initialResults,
  reflectionStats,
  summarize,
  summarizeJudge,
  type AccuracySummary,
  type EvalProblem,
  type EvalScorer,
  type EvaluatedProblem,
  type GenerateFn,
  type JudgeDiagnostics,
  type JudgeResult,
  type JudgeSummary,
  type ReflectionStats,
  type SampleFn,
  type ScoreFn,
} from '@spark/method/evaluation';
import type { TemplateVariant } from '@spark/method/templates';

import type { InputReport } from './inputs.js';

export interface RunSettings {
  readonly variant: TemplateVariant;
  readonly batch: number;
  readonly reflect: boolean;
}

/** summary.json of a problem evaluation. */
export interface ProblemEvalSummary {
  readonly kind: 'problems';
  readonly input: InputReport;
  readonly settings: RunSettings & Record<string, unknown>;
  /** The scored answers (the final ones when self-reflection ran). */
  readonly answers: AccuracySummary;
  /** With --reflect: the first answers, i.e. accuracy without self-reflection. */
  readonly withoutReflection?: AccuracySummary;
  readonly reflection?: ReflectionStats;
  readonly seconds: number;
  readonly problemsPerSecond: number;
}

/** Evaluates problems and summarises them. */
export async function runProblems(
  problems: readonly EvalProblem[],
  generate: GenerateFn,
  scorer: EvalScorer,
  input: InputReport,
  settings: RunSettings & Record<string, unknown>,
  /** Problems per evaluation round (default: settings.batch; larger in cluster mode). */
  roundBatch = settings.batch,
): Promise<{ results: EvaluatedProblem[]; summary: ProblemEvalSummary; table: string }> {
  const t0 = performance.now();
  const results = await evaluateProblems(problems, {
    generate,
    scorer,
    variant: settings.variant,
    reflect: settings.reflect,
    batchSize: roundBatch,
  });
  const seconds = (performance.now() - t0) / 1000;
  const answers = summarize(results);
  const summary: ProblemEvalSummary = settings.reflect
    ? {
        kind: 'problems',
        input,
        settings,
        answers,
        withoutReflection: summarize(initialResults(results)),
        reflection: reflectionStats(results),
        seconds,
        problemsPerSecond: seconds > 0 ? results.length / seconds : 0,
      }
    : {
        kind: 'problems',
        input,
        settings,
        answers,
        seconds,
        problemsPerSecond: seconds > 0 ? results.length / seconds : 0,
      };
  return { results, summary, table: problemTable(summary) };
}

/** The printed form of a problem summary (the accuracy table, plus reflection figures when present). */
export function problemTable(
  s: Pick<ProblemEvalSummary, 'answers' | 'withoutReflection' | 'reflection'>,
): string {
  const lines = [formatAccuracyTable(s.answers, s.withoutReflection)];
  const r = s.reflection;
  if (r) {
    const c = r.verdictCounts;
    lines.push(
      '',
      `self-reflection: accuracy ${(100 * r.accuracyBefore).toFixed(1)}% -> ${(100 * r.accuracyAfter).toFixed(1)}%, ` +
        `fixed ${r.fixed}, broken ${r.broken}`,
      `self-judge: ${r.verdicts} verdicts, accuracy ${(100 * r.verdictAccuracy).toFixed(1)}% ` +
        `(Yes ${c.yes}, No ${c.no}, other ${c.other}, none ${c.none}); stopped by Yes ${r.stoppedByYes}/${r.items}`,
      `model calls: ${r.modelCalls} (at most ${r.maxCallsPerItem} per item)`,
    );
  }
  return lines.join('\n');
}

/** summary.json of a reward benchmark. */
export interface JudgeEvalSummary {
  readonly kind: 'judge';
  readonly input: InputReport;
  readonly settings: Record<string, unknown>;
  /** Every judged item (all sets). */
  readonly items: number;
  /** The headline: the standard items (gold vs near miss, options listed Yes/A first). */
  readonly judge: JudgeSummary;
  /** The diagnostics over every set (docs/evaluation.md "Judge diagnostics"). */
  readonly diagnostics: JudgeDiagnostics;
  /** How the model's own mistakes were collected. */
  readonly ownMistakes: {
    readonly sampling: string;
    readonly draws: number;
    readonly samples: number;
    readonly wrong: number;
    readonly problems: number;
  };
  readonly seconds: number;
}

/** What the reward benchmark can use beyond greedy generation. */
export interface JudgeExtras {
  /** Samples the model's answers for its own mistakes (absent: none are collected). */
  readonly sample?: SampleFn;
  /** How `sample` samples, for the summary (e.g. `temperature 1.0`, `greedy`). */
  readonly sampling: string;
  /** Answers sampled per problem (0: no own-mistake items). */
  readonly ownDraws: number;
  /** Teacher-forced verdict scores for the margin AUC (absent: no AUC). */
  readonly score?: ScoreFn;
}

/**
 * Builds the judge benchmark (the checkpoint-independent standard items, their option-order counterparts,
 * far-off answers, and the model's own mistakes) from the problems, judges it and diagnoses the verdicts.
 */
export async function runJudge(
  problems: readonly EvalProblem[],
  generate: GenerateFn,
  scorer: EvalScorer,
  input: InputReport,
  settings: { readonly variant: TemplateVariant; readonly batch: number; readonly seed: number } & Record<
    string,
    unknown
  >,
  /** Items per generate call (default: settings.batch; larger in cluster mode). */
  roundBatch = settings.batch,
  extras: JudgeExtras = { sampling: 'none', ownDraws: 0 },
): Promise<{ results: JudgeResult[]; summary: JudgeEvalSummary; table: string }> {
  const t0 = performance.now();
  const sources = problems
    .filter((p): p is EvalProblem & { answer: string } => p.answer !== undefined)
    .map((p) => ({ id: p.id, question: p.question, answer: p.answer, family: p.dataset }));
  const own =
    extras.sample && extras.ownDraws > 0
      ? await collectOwnMistakes(sources, {
          sample: extras.sample,
          draws: extras.ownDraws,
          scorer,
          variant: settings.variant,
          batchSize: roundBatch,
        })
      : { mistakes: [], samples: 0, wrong: 0 };
  const items = buildJudgeBenchmark(sources, {
    variant: settings.variant,
    seed: settings.seed,
    own: own.mistakes,
  });
  let results = await evaluateJudge(items, { generate, scorer, batchSize: roundBatch });
  if (extras.score) results = await scoreJudgeMargins(items, results, extras.score, settings.batch);
  const judge = summarizeJudge(results.filter((r) => judgeSetOf(r.tags) === 'standard'));
  const diagnostics = diagnoseJudge(results);
  const summary: JudgeEvalSummary = {
    kind: 'judge',
    input,
    settings,
    items: items.length,
    judge,
    diagnostics,
    ownMistakes: {
      sampling: extras.sampling,
      draws: extras.ownDraws,
      samples: own.samples,
      wrong: own.wrong,
      problems: own.mistakes.length,
    },
    seconds: (performance.now() - t0) / 1000,
  };
  return {
    results,
    summary,
    table: `${formatJudgeTable(judge)}\n\n${formatJudgeDiagnostics(diagnostics)}`,
  };
}
