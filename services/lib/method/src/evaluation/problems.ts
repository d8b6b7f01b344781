// Reasoning evaluation over a model, independent of where the model runs: the caller supplies a batched
// text → text `generate` function (greedy decoding; in-process native sampling in the CLI, rollout
// workers in a cluster) and a `scorer` (the verifier). Every problem is asked with the answer-format
// instruction appended (problemPrompt). With `reflect`, test-time self-reflection (docs/method.md "Test-time self-reflection")
// follows the first answer: up to `maxRounds` (2) rounds of
//   judge: the FIRST pointwise yes/no template on the question and the extracted answer; a boxed verdict
//          of exactly "Yes" (first box, trimmed, case-sensitive) stops;
//   re-solve: resolvePrompt (question + the previous answer + the instruction); its answer replaces the
//          previous one.
// so an item costs at most 1 + 2·maxRounds = 5 model calls. An answer with no extracted answer is not
// sent to the judge (there is nothing to judge; treated as a "No" verdict without a call) and goes
// straight to re-solving. The LAST answer is the one scored. Items are processed in batches: every model
// call of a round is one batched `generate`.
import { lastBoxed, firstBoxed } from '../datasets/index.js';
import { problemPrompt, resolvePrompt, selfJudgePrompt, type TemplateVariant } from '../templates/index.js';
import type { ProblemResult } from './summary.js';

/** A batched, greedy model call: one output text per prompt text, in order. */
export type GenerateFn = (prompts: readonly string[]) => Promise<readonly string[]>;

/** The verifier surface evaluation needs (`@spark/verifier`'s Verifier satisfies it). */
export interface EvalScorer {
  verify(
    response: string,
    label: string,
    item?: { readonly mode?: 'math' | 'judge' },
  ): Promise<{ readonly reward: 0 | 1; readonly extracted: string | null; readonly reason: string }>;
}

/** A problem to evaluate. */
export interface EvalProblem {
  readonly id: string;
  readonly dataset: string;
  readonly question: string;
  /** The ground truth; absent for `spark infer` (then nothing is scored). */
  readonly answer?: string;
}

/** One model call of a reflection trace. */
export interface TraceStep {
  readonly kind: 'answer' | 'judge' | 'resolve';
  readonly round: number;
  readonly prompt: string;
  readonly output: string;
  /** answer/resolve: the extracted answer; judge: the boxed verdict (first box, trimmed). */
  readonly extracted: string | null;
  /** answer/resolve: scored against the ground truth when known. */
  readonly correct?: boolean;
}

/** The self-reflection part of a result. */
export interface ReflectionOutcome {
  /** The first answer, before reflection. */
  readonly initial: {
    readonly output: string;
    readonly extracted: string | null;
    readonly correct: boolean;
    readonly reason: string;
  };
  /** Model calls spent on this item (≤ 1 + 2·maxRounds). */
  readonly calls: number;
  /** Reflection rounds run (each: a judge call, then a re-solve unless the verdict was "Yes"). */
  readonly rounds: number;
  /** Each judge verdict: the boxed verdict and whether it matched the truth about the judged answer. */
  readonly verdicts: readonly { readonly verdict: string | null; readonly judgedCorrect: boolean }[];
  /** How the loop ended: a "Yes" verdict, or the round limit. */
  readonly stop: 'yes' | 'max-rounds';
  readonly trace: readonly TraceStep[];
}

/** A result with its optional self-reflection outcome. */
export interface EvaluatedProblem extends ProblemResult {
  readonly reflection?: ReflectionOutcome;
}

export interface EvaluateOptions {
  readonly generate: GenerateFn;
  /** Needed to score problems that carry an answer; without it `correct` is false and `reason` "unscored". */
  readonly scorer?: EvalScorer;
  /** Template wording (default `short`, for character-level models). */
  readonly variant?: TemplateVariant;
  /** Run test-time self-reflection (default false). */
  readonly reflect?: boolean;
  /** Self-reflection rounds (default 2, at most 2). */
  readonly maxRounds?: number;
  /** Problems per batch of model calls (default 32). */
  readonly batchSize?: number;
  /** Called after each batch with the number of problems done. */
  readonly onProgress?: (done: number, total: number) => void;
}

/** The most self-reflection rounds (docs/method.md "Test-time self-reflection"). */
export const MAX_REFLECTION_ROUNDS = 2;

interface Scoring {
  readonly extracted: string | null;
  readonly correct: boolean;
  readonly reason: string;
}

async function scoreOutput(o: EvaluateOptions, p: EvalProblem, output: string): Promise<Scoring> {
  if (p.answer !== undefined && o.scorer) {
    const v = await o.scorer.verify(output, p.answer, { mode: 'math' });
    return {
      extracted: v.extracted ?? lastBoxed(output)?.trim() ?? null,
      correct: v.reward === 1,
      reason: v.reason,
    };
  }
  const extracted = lastBoxed(output)?.trim() ?? null;
  return { extracted: extracted === '' ? null : extracted, correct: false, reason: 'unscored' };
}

/** The judge's verdict in a judge output: the first box, trimmed (null when none). */
export function verdictOf(output: string): string | null {
  const v = firstBoxed(output);
  return v === null ? null : v.trim();
}

interface ItemState {
  readonly problem: EvalProblem;
  output: string;
  scoring: Scoring;
  readonly initial: Scoring & { output: string };
  calls: number;
  rounds: number;
  done: boolean;
  stop: 'yes' | 'max-rounds';
  readonly verdicts: { verdict: string | null; judgedCorrect: boolean }[];
  readonly trace: TraceStep[];
}

function checkOptions(o: EvaluateOptions): { batch: number; rounds: number; variant: TemplateVariant } {
  const batch = o.batchSize ?? 32;
  const rounds = o.maxRounds ?? MAX_REFLECTION_ROUNDS;
  if (!Number.isInteger(batch) || batch < 1)
    throw new RangeError(`batchSize must be a positive integer, got ${batch}`);
  if (!Number.isInteger(rounds) || rounds < 0 || rounds > MAX_REFLECTION_ROUNDS)
    throw new RangeError(`maxRounds must be an integer in [0, ${MAX_REFLECTION_ROUNDS}], got ${rounds}`);
  return { batch, rounds, variant: o.variant ?? 'short' };
}

async function callModel(o: EvaluateOptions, prompts: readonly string[]): Promise<readonly string[]> {
  if (prompts.length === 0) return [];
  const outs = await o.generate(prompts);
  if (outs.length !== prompts.length)
    throw new Error(`generate returned ${outs.length} outputs for ${prompts.length} prompts`);
  return outs;
}

/** Runs the §4 loop on a batch whose first answers are in place. */
async function reflectBatch(
  o: EvaluateOptions,
  items: ItemState[],
  rounds: number,
  variant: TemplateVariant,
): Promise<void> {
  for (let round = 1; round <= rounds; round++) {
    const active = items.filter((s) => !s.done);
    if (active.length === 0) break;
    // judge the current extracted answers (items without one skip the call: verdict null = not "Yes")
    const judged = active.filter((s) => s.scoring.extracted !== null);
    const judgePrompts = judged.map((s) =>
      selfJudgePrompt(s.problem.question, s.scoring.extracted as string, variant),
    );
    const judgeOuts = await callModel(o, judgePrompts);
    judged.forEach((s, i) => {
      const output = judgeOuts[i] as string;
      const verdict = verdictOf(output);
      s.calls++;
      s.trace.push({ kind: 'judge', round, prompt: judgePrompts[i] as string, output, extracted: verdict });
      // a verdict is right when it is exactly "Yes" for a correct answer or exactly "No" for a wrong one
      // (any other verdict, or none, is a wrong verdict — though it still triggers a re-solve)
      s.verdicts.push({
        verdict,
        judgedCorrect: s.scoring.correct ? verdict === 'Yes' : verdict === 'No',
      });
      if (verdict === 'Yes') {
        s.done = true;
        s.stop = 'yes';
      }
    });
    for (const s of active) s.rounds = round;
    const resolving = active.filter((s) => !s.done);
    const resolvePrompts = resolving.map((s) =>
      resolvePrompt(s.problem.question, s.scoring.extracted ?? '(none)', variant),
    );
    const resolveOuts = await callModel(o, resolvePrompts);
    for (const [i, s] of resolving.entries()) {
      const output = resolveOuts[i] as string;
      const scoring = await scoreOutput(o, s.problem, output);
      s.calls++;
      s.output = output;
      s.scoring = scoring;
      s.trace.push({
        kind: 'resolve',
        round,
        prompt: resolvePrompts[i] as string,
        output,
        extracted: scoring.extracted,
        ...(s.problem.answer !== undefined ? { correct: scoring.correct } : {}),
      });
    }
  }
}

/**
 * Evaluates problems in batches: greedy answers scored with the lenient verifier, and with `reflect` the
 * self-reflection loop. Results are in input order.
 */
export async function evaluateProblems(
  problems: readonly EvalProblem[],
  o: EvaluateOptions,
): Promise<EvaluatedProblem[]> {
  const { batch, rounds, variant } = checkOptions(o);
  const out: EvaluatedProblem[] = [];
  for (let start = 0; start < problems.length; start += batch) {
    const chunk = problems.slice(start, start + batch);
    const prompts = chunk.map((p) => problemPrompt(p.question, variant));
    const outputs = await callModel(o, prompts);
    const states: ItemState[] = [];
    for (const [i, p] of chunk.entries()) {
      const output = outputs[i] as string;
      const scoring = await scoreOutput(o, p, output);
      states.push({
        problem: p,
        output,
        scoring,
        initial: { ...scoring, output },
        calls: 1,
        rounds: 0,
        done: false,
        stop: 'max-rounds',
        verdicts: [],
        trace: [
          {
            kind: 'answer',
            round: 0,
            prompt: prompts[i] as string,
            output,
            extracted: scoring.extracted,
            ...(p.answer !== undefined ? { correct: scoring.correct } : {}),
          },
        ],
      });
    }
    if (o.reflect) await reflectBatch(o, states, rounds, variant);
    for (const s of states) {
      const base: ProblemResult = {
        dataset: s.problem.dataset,
        id: s.problem.id,
        problem: s.problem.question,
        answer: s.problem.answer ?? '',
        output: s.output,
        extracted: s.scoring.extracted,
        correct: s.scoring.correct,
        reason: s.scoring.reason,
      };
      out.push(
        o.reflect
          ? {
              ...base,
              reflection: {
                initial: {
                  output: s.initial.output,
                  extracted: s.initial.extracted,
                  correct: s.initial.correct,
                  reason: s.initial.reason,
                },
                calls: s.calls,
                rounds: s.rounds,
                verdicts: s.verdicts,
                stop: s.stop,
                trace: s.trace,
              },
            }
          : base,
      );
    }
    o.onProgress?.(Math.min(start + batch, problems.length), problems.length);
  }
  return out;
}

/** What self-reflection did over a set of results. */
export interface ReflectionStats {
  readonly items: number;
  /** Micro accuracy of the first answers and of the final answers. */
  readonly accuracyBefore: number;
  readonly accuracyAfter: number;
  /** Wrong first answer → correct final answer. */
  readonly fixed: number;
  /** Correct first answer → wrong final answer. */
  readonly broken: number;
  /** Judge calls made, and how many verdicts were right about the judged answer. */
  readonly verdicts: number;
  readonly verdictAccuracy: number;
  /** Verdicts by value: Yes, No, other (any other box), none (no box). */
  readonly verdictCounts: {
    readonly yes: number;
    readonly no: number;
    readonly other: number;
    readonly none: number;
  };
  /** Items stopped by a "Yes". */
  readonly stoppedByYes: number;
  readonly modelCalls: number;
  readonly maxCallsPerItem: number;
}

/** Aggregates the reflection outcomes of results evaluated with `reflect`. */
export function reflectionStats(results: readonly EvaluatedProblem[]): ReflectionStats {
  let before = 0;
  let after = 0;
  let fixed = 0;
  let broken = 0;
  let verdicts = 0;
  let right = 0;
  let stoppedByYes = 0;
  let modelCalls = 0;
  let maxCalls = 0;
  const counts = { yes: 0, no: 0, other: 0, none: 0 };
  let items = 0;
  for (const r of results) {
    const f = r.reflection;
    if (!f) continue;
    items++;
    if (f.initial.correct) before++;
    if (r.correct) after++;
    if (!f.initial.correct && r.correct) fixed++;
    if (f.initial.correct && !r.correct) broken++;
    for (const v of f.verdicts) {
      verdicts++;
      if (v.judgedCorrect) right++;
      if (v.verdict === 'Yes') counts.yes++;
      else if (v.verdict === 'No') counts.no++;
      else if (v.verdict === null) counts.none++;
      else counts.other++;
    }
    if (f.stop === 'yes') stoppedByYes++;
    modelCalls += f.calls;
    maxCalls = Math.max(maxCalls, f.calls);
  }
  return {
    items,
    accuracyBefore: items ? before / items : 0,
    accuracyAfter: items ? after / items : 0,
    fixed,
    broken,
    verdicts,
    verdictAccuracy: verdicts ? right / verdicts : 0,
    verdictCounts: counts,
    stoppedByYes,
    modelCalls,
    maxCallsPerItem: maxCalls,
  };
}

/** The results as they were before reflection (the first answers), for the "without reflection" summary. */
export function initialResults(results: readonly EvaluatedProblem[]): ProblemResult[] {
  return results.map((r) =>
    r.reflection
      ? {
          dataset: r.dataset,
          id: r.id,
          problem: r.problem,
          answer: r.answer,
          output: r.reflection.initial.output,
          extracted: r.reflection.initial.extracted,
          correct: r.reflection.initial.correct,
          reason: r.reflection.initial.reason,
        }
      : r,
  );
}
