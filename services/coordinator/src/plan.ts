// The pure parts of a job's plan, unit-testable without any service: the job's dataset view (train and
// held-out problems), step accounting (steps per epoch, total steps, the epoch of a step), deterministic
// prompt selection per step and per warm-up step, the learner's optimizer-step horizon, the held-out
// evaluation items (problems + judge + reflection items with checkpoint-independent wrong answers), and
// the aggregation of verified groups into event metrics.
import { DatasetError, loadDatasetFile, type DatasetFormat } from '@spark/method/datasets';
import type { PromptItem, VerifiedGroup } from '@spark/contract';
import {
  generateTasks,
  Rng,
  specTaskMix,
  type TaskDatasetOptions,
  type TaskProblem,
} from '@spark/method/tasks';
import {
  buildJudgeBenchmark,
  buildReflectionItems,
  diagnoseJudge,
  judgeSetOf,
  judgeWarmupPair,
  verdictStatus,
  wrongAnswerFor,
} from '@spark/method/evaluation';
import { problemPrompt, type TemplateVariant } from '@spark/method/templates';
import type { JobSpec } from '@spark/protocol';

import { algorithmName } from './spec.js';

/** One problem of a job's dataset. */
export interface Problem {
  readonly id: string;
  readonly question: string;
  readonly answer: string;
  /** Worked solution ending in \boxed{answer} (built-in problems, MATH/GSM8K files), used for warm-up. */
  readonly solution: string | null;
  /** The task family (built-in problems) or the record's dataset (files), for per-family judge figures. */
  readonly family?: string;
}

/** A job's dataset: the training problems and the held-out problems evaluations use. */
export interface JobDataset {
  readonly train: readonly Problem[];
  readonly test: readonly Problem[];
}

function fromTask(p: TaskProblem): Problem {
  return { id: p.id, question: p.question, answer: p.answer, solution: p.solution, family: p.family };
}

/**
 * The built-in task mix of a job: `taskFamilies` (empty = every family) at difficulties
 * 1..`taskMaxDifficulty` (0 = the demo mix's 1..2) — @spark/method's specTaskMix, which the learner also
 * records in every checkpoint.
 */
export function taskMix(
  spec: Partial<Pick<JobSpec, 'taskFamilies' | 'taskMaxDifficulty'>>,
): Pick<TaskDatasetOptions, 'families' | 'difficulties'> {
  return specTaskMix(spec);
}

/**
 * The built-in dataset: `trainSize` train-split problems and `evalSize` unique test-split problems of the
 * demo task mix (every family, difficulty 1–2), generated from the job's seed. Train and test never share
 * a question (the split is a hash of the question).
 */
export function builtinDataset(
  spec: Pick<JobSpec, 'seed' | 'trainSize' | 'evalSize'> &
    Partial<Pick<JobSpec, 'taskFamilies' | 'taskMaxDifficulty'>>,
): JobDataset {
  const mix = taskMix(spec);
  const train = generateTasks({ seed: spec.seed, split: 'train', count: spec.trainSize, ...mix });
  const test = generateTasks({
    seed: spec.seed,
    split: 'test',
    count: spec.evalSize,
    unique: true,
    ...mix,
  });
  return { train: train.map(fromTask), test: test.map(fromTask) };
}

/**
 * A file dataset: the records in a seeded shuffle; the first `evalSize` are held out, the rest train. The
 * training part must hold at least one batch. Records whose solution lacks a `\boxed{}` get none.
 */
export async function fileDataset(spec: JobSpec): Promise<JobDataset> {
  const loaded = await loadDatasetFile(spec.dataset, {
    format: spec.datasetFormat as DatasetFormat | 'auto',
  });
  if (loaded.records.length === 0) {
    throw new DatasetError(`${spec.dataset}: no usable record (${loaded.errorCount} bad lines)`);
  }
  const all: Problem[] = loaded.records.map((r) => ({
    id: r.id,
    question: r.question,
    answer: r.answer,
    solution: r.solution?.includes('\\boxed{') ? r.solution : null,
    ...(r.dataset !== undefined ? { family: r.dataset } : {}),
  }));
  const order = new Rng(`spark/coordinator/${spec.seed}/file-split`).shuffle(all);
  const evalCount = Math.min(spec.evalSize, Math.floor(order.length / 2));
  const test = order.slice(0, evalCount);
  const train = order.slice(evalCount);
  if (train.length < spec.batchSize || test.length === 0) {
    throw new DatasetError(
      `${spec.dataset}: ${order.length} records are too few for batchSize ${spec.batchSize} plus held-out problems`,
    );
  }
  return { train, test };
}

/** Steps of one epoch: whole batches of B over the training problems (the remainder is not used). */
export function stepsPerEpoch(trainCount: number, batchSize: number): number {
  return Math.max(1, Math.floor(trainCount / batchSize));
}

/** RL steps of the job: epochs × steps per epoch, bounded by maxSteps when set. */
export function totalSteps(
  spec: Pick<JobSpec, 'epochs' | 'maxSteps' | 'batchSize'>,
  trainCount: number,
): number {
  const all = spec.epochs * stepsPerEpoch(trainCount, spec.batchSize);
  return spec.maxSteps > 0 ? Math.min(all, spec.maxSteps) : all;
}

/** The epoch a step belongs to. */
export function epochOf(step: number, trainCount: number, batchSize: number): number {
  return Math.floor(step / stepsPerEpoch(trainCount, batchSize));
}

/** The order of the training problems in one epoch: a permutation seeded by (seed, epoch). */
export function epochOrder(n: number, seed: number, epoch: number): number[] {
  return new Rng(`spark/coordinator/${seed}/epoch/${epoch}`).shuffle(Array.from({ length: n }, (_, i) => i));
}

/** The problem prompt of training problem `index` (ids carry the index: questions may repeat). */
export function problemItem(p: Problem, index: number, variant: TemplateVariant, prefix = 'p'): PromptItem {
  return {
    promptId: `${prefix}${index}-${p.id}`.slice(0, 200),
    kind: 'problem',
    text: problemPrompt(p.question, variant),
    label: p.answer,
    sourceGroupId: null,
    question: p.question,
    tags: [],
  };
}

/**
 * The B policy-phase prompts of a step: the step's slice of its epoch's permutation. `order` may be given
 * (the driver caches one permutation per epoch).
 */
export function promptsForStep(
  train: readonly Problem[],
  spec: Pick<JobSpec, 'batchSize' | 'seed' | 'templateVariant'>,
  step: number,
  order?: readonly number[],
): PromptItem[] {
  const perEpoch = stepsPerEpoch(train.length, spec.batchSize);
  const epoch = Math.floor(step / perEpoch);
  const slot = step % perEpoch;
  const perm = order ?? epochOrder(train.length, spec.seed, epoch);
  const out: PromptItem[] = [];
  for (let k = 0; k < spec.batchSize; k++) {
    const idx = perm[slot * spec.batchSize + k] as number;
    out.push(problemItem(train[idx] as Problem, idx, spec.templateVariant as TemplateVariant));
  }
  return out;
}

/**
 * The supervised pairs of warm-up step `w`: `warmupBatchSize` problems taken cyclically from a seeded
 * permutation of the problems that have a worked solution. Target = the worked solution.
 *
 * A share `warmupJudgeFraction` (unset = 0.25, rounded per batch) of the batch are instead judge- and
 * reflection-format examples of the same problems (@spark/method/evaluation judgeWarmupPair: pointwise
 * yes/no and a/b in both option orders, pairwise, reflection and test-time re-solve), so the model learns
 * the formats it is asked to answer in the reward phase and at test time (the reference starts from an
 * instruct model that already follows them). Every algorithm gets the same pairs.
 */
export function warmupBatch(
  train: readonly Problem[],
  spec: Pick<JobSpec, 'warmupBatchSize' | 'seed' | 'templateVariant'> &
    Partial<Pick<JobSpec, 'warmupJudgeFraction'>>,
  w: number,
): { prompt: string; target: string }[] {
  const usable = train.filter((p) => p.solution !== null);
  if (usable.length === 0) return [];
  const variant = spec.templateVariant as TemplateVariant;
  const fraction = spec.warmupJudgeFraction ?? DEFAULT_WARMUP_JUDGE_FRACTION;
  const judgeCount = Math.round(fraction * spec.warmupBatchSize);
  const perPass = usable.length;
  const out: { prompt: string; target: string }[] = [];
  let cachedPass = -1;
  let perm: number[] = [];
  for (let k = 0; k < spec.warmupBatchSize; k++) {
    const pos = w * spec.warmupBatchSize + k;
    const pass = Math.floor(pos / perPass);
    if (pass !== cachedPass) {
      perm = new Rng(`spark/coordinator/${spec.seed}/warmup/${pass}`).shuffle(
        Array.from({ length: perPass }, (_, i) => i),
      );
      cachedPass = pass;
    }
    const p = usable[perm[pos % perPass] as number] as Problem;
    if (k < judgeCount)
      out.push(judgeWarmupPair({ ...p, solution: p.solution as string }, variant, spec.seed, pos));
    else out.push({ prompt: problemPrompt(p.question, variant), target: p.solution as string });
  }
  return out;
}

/** Default share of judge/reflection-format pairs in a warm-up batch (JobSpec.warmupJudgeFraction unset). */
export const DEFAULT_WARMUP_JUDGE_FRACTION = 0.25;

/** Optimizer steps of one GRPO phase of `prompts` prompts (ceil(prompts·G / miniBatchSize)). */
export function optimizerStepsPerPhase(prompts: number, groupSize: number, miniBatchSize: number): number {
  return Math.ceil((prompts * groupSize) / miniBatchSize);
}

/**
 * The learner's lr-schedule horizon: the RL optimizer steps the whole job is expected to take, policy and
 * reward phases together. spark: both phases every step (recycling yields ≈ B items per step); grpo:
 * policy phases only; grpo-judge: reward phases only, about every other step (≤ B/2 judge items a step).
 */
export function estimateOptimizerSteps(spec: JobSpec, steps: number): number {
  const perPhase = optimizerStepsPerPhase(spec.batchSize, spec.groupSize, spec.miniBatchSize);
  const algo = algorithmName(spec.algorithm);
  const phasesPerStep = algo === 'spark' ? 2 : algo === 'grpo' ? 1 : 0.5;
  return Math.max(1, Math.ceil(steps * perPhase * phasesPerStep));
}

// ---- evaluation items ---------------------------------------------------------------------------

/**
 * A deterministic wrong answer for a gold answer, depending only on the gold string (so eval items are
 * the same for every checkpoint) — the shared builder of `spark eval --judge`.
 */
export const wrongAnswer = wrongAnswerFor;

/** The eval kinds an EVAL event reports (evalTagOf). */
export const EVAL_TAGS = ['problem', 'pointwise-yesno', 'pointwise-ab', 'pairwise', 'reflection'] as const;
export type EvalTag = (typeof EVAL_TAGS)[number];

/** The eval kind of an eval item: problems and reflections by kind, judge items by style (tags[0]). */
export function evalTagOf(item: PromptItem): string {
  if (item.kind === 'problem' || item.kind === 'reflection') return item.kind;
  return item.tags[0] ?? item.kind;
}

/**
 * The held-out evaluation set, built with the same checkpoint-independent builders as `spark eval
 * --judge` (@spark/method/evaluation): per held-out problem the problem itself, a pointwise yes/no item,
 * a pointwise a/b item and a pairwise item (the gold answer vs its deterministic wrong answer, targets
 * alternating over problems so each style is balanced), and a reflection item (the wrong answer shown,
 * label = gold). Templates are drawn with the seed. The judge diagnostics add, per problem, the two
 * pointwise items with their options listed No/B first and three items on a far-off wrong answer (the
 * headline judge figures use the standard items only; see aggregateEval).
 */
export function buildEvalItems(
  test: readonly Problem[],
  variant: TemplateVariant,
  seed: number,
): PromptItem[] {
  const problems = test.map((p, i) => ({ ...problemItem(p, i, variant, 'e'), tags: ['problem'] }));
  const sources = test.map((p) => ({
    id: p.id,
    question: p.question,
    answer: p.answer,
    ...(p.family !== undefined ? { family: p.family } : {}),
  }));
  return [
    ...problems,
    ...buildJudgeBenchmark(sources, { variant, seed }),
    ...buildReflectionItems(sources, { variant, seed }),
  ];
}

/** Eval metric keys of an EVAL event, per eval tag. */
const EVAL_KEYS: Readonly<Record<EvalTag, string>> = {
  problem: 'answer_accuracy',
  'pointwise-yesno': 'pointwise_yesno_accuracy',
  'pointwise-ab': 'pointwise_ab_accuracy',
  pairwise: 'pairwise_accuracy',
  reflection: 'reflection_accuracy',
};

function mean(xs: readonly number[]): number {
  return xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0;
}

/**
 * An EVAL event's metrics from the verified eval groups (G = 1): `answer_accuracy`,
 * `pointwise_yesno_accuracy`, `pointwise_ab_accuracy`, `pointwise_accuracy` (both styles),
 * `pairwise_accuracy`, `judge_accuracy` (all three styles), `reflection_accuracy`, `answer_missing`
 * (share of problems with no extracted answer), `items`, `problems` — the judge figures over the standard
 * judge items only — and the judge diagnostics (`judgeDiagnosticMetrics`).
 */
export function aggregateEval(groups: readonly VerifiedGroup[]): Record<string, number> {
  const byTag = new Map<string, number[]>();
  let missing = 0;
  const judged: JudgedEvalItem[] = [];
  for (const g of groups) {
    const tag = evalTagOf(g.prompt);
    const rewards = g.responses.map((r) => r.reward);
    const judge = g.prompt.kind === 'pointwise' || g.prompt.kind === 'pairwise';
    if (judge) {
      for (const r of g.responses)
        judged.push({
          style: tag,
          correct: r.reward === 1,
          verdict: r.extracted,
          tags: g.prompt.tags,
          status: verdictStatus(r.text, tag),
        });
      if (judgeSetOf(g.prompt.tags) !== 'standard') continue;
    }
    byTag.set(tag, [...(byTag.get(tag) ?? []), ...rewards]);
    if (tag === 'problem' && g.responses.every((r) => r.extracted === null)) missing++;
  }
  const m: Record<string, number> = {};
  for (const tag of EVAL_TAGS) m[EVAL_KEYS[tag]] = mean(byTag.get(tag) ?? []);
  const pw = [...(byTag.get('pointwise-yesno') ?? []), ...(byTag.get('pointwise-ab') ?? [])];
  m.pointwise_accuracy = mean(pw);
  m.judge_accuracy = mean([...pw, ...(byTag.get('pairwise') ?? [])]);
  const problems = byTag.get('problem')?.length ?? 0;
  m.answer_missing = problems ? missing / problems : 0;
  m.problems = problems;
  m.items = groups.length;
  return { ...m, ...judgeDiagnosticMetrics(judged) };
}

type JudgedEvalItem = Parameters<typeof diagnoseJudge>[0][number];

/** Longest family name used in a metric key. */
const MAX_FAMILY_KEY = 64;

/**
 * The judge diagnostics of an EVAL event, as flat metrics (shares in [0, 1]):
 * - option order: `pointwise_accuracy.yes_first` / `.no_first` (the same items, options listed Yes/A first
 *   or No/B first) with `pointwise_yes_share.yes_first` / `.no_first` (share of Yes/A verdicts), and
 *   `pairwise_accuracy.gold_a` / `.gold_b`;
 * - verdict shares on the standard items: `yesno_yes_share`, `ab_a_share`, `pairwise_a_share`;
 * - verdict production on the standard items: `judge_no_verdict` (no box) and `judge_box_before_verdict`
 *   (the first box is not a verdict, a later one is);
 * - wrong answers shown: `pointwise_accuracy.near` / `.far` (pointwise items whose target is incorrect),
 *   `pairwise_accuracy.near` / `.far`;
 * - `judge_accuracy.family.<family>` on the standard items.
 */
export function judgeDiagnosticMetrics(judged: readonly JudgedEvalItem[]): Record<string, number> {
  if (judged.length === 0) return {};
  const d = diagnoseJudge(judged);
  const m: Record<string, number> = {};
  const put = (key: string, v: number | undefined): void => {
    if (v !== undefined) m[key] = v;
  };
  const order = d.byOrder.pointwise ?? {};
  put('pointwise_accuracy.yes_first', order['yes-first']?.accuracy);
  put('pointwise_accuracy.no_first', order['no-first']?.accuracy);
  put('pointwise_yes_share.yes_first', order['yes-first']?.yesShare);
  put('pointwise_yes_share.no_first', order['no-first']?.yesShare);
  put('pairwise_accuracy.gold_a', d.byOrder.pairwise?.['gold-A']?.accuracy);
  put('pairwise_accuracy.gold_b', d.byOrder.pairwise?.['gold-B']?.accuracy);
  put('yesno_yes_share', d.byOrder['pointwise-yesno']?.['yes-first']?.yesShare);
  put('ab_a_share', d.byOrder['pointwise-ab']?.['yes-first']?.yesShare);
  const pairwise = d.byOrder.pairwise ?? {};
  const pairs = Object.values(pairwise);
  const pairCount = pairs.reduce((a, g) => a + g.count, 0);
  if (pairCount > 0) m.pairwise_a_share = pairs.reduce((a, g) => a + g.yesShare * g.count, 0) / pairCount;
  const verdicts = Object.values(d.verdicts);
  const standard = verdicts.reduce((a, v) => a + v.count, 0);
  if (standard > 0) {
    m.judge_no_verdict = verdicts.reduce((a, v) => a + v.none, 0) / standard;
    m.judge_box_before_verdict = verdicts.reduce((a, v) => a + v.boxBeforeVerdict, 0) / standard;
  }
  for (const kind of ['near', 'far'] as const) {
    const w = d.wrongAnswers[kind];
    if (w && w.pointwise.count > 0) m[`pointwise_accuracy.${kind}`] = w.pointwise.accuracy;
    if (w && w.pairwise.count > 0) m[`pairwise_accuracy.${kind}`] = w.pairwise.accuracy;
  }
  for (const [family, g] of Object.entries(d.byFamily))
    m[`judge_accuracy.family.${family.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, MAX_FAMILY_KEY)}`] =
      g.accuracy;
  return m;
}

/**
 * A training phase's sample metrics: `groups`, `samples`, `reward_mean`, per kind `reward_mean.<kind>`
 * and `samples.<kind>`, `judge_accuracy.pointwise` / `judge_accuracy.pairwise` (mean reward of judge
 * samples), group outcomes `groups_all_correct` / `groups_all_wrong` / `groups_mixed`, `truncated_ratio`
 * (responses cut by max tokens) and `response_chars_mean`.
 */
export function aggregatePhase(groups: readonly VerifiedGroup[]): Record<string, number> {
  const m: Record<string, number> = {};
  const perKind = new Map<string, number[]>();
  const all: number[] = [];
  let allCorrect = 0;
  let allWrong = 0;
  let truncated = 0;
  let chars = 0;
  for (const g of groups) {
    const rewards = g.responses.map((r) => r.reward as number);
    all.push(...rewards);
    perKind.set(g.prompt.kind, [...(perKind.get(g.prompt.kind) ?? []), ...rewards]);
    const s = rewards.reduce((a, b) => a + b, 0);
    if (rewards.length && s === rewards.length) allCorrect++;
    else if (s === 0) allWrong++;
    for (const r of g.responses) {
      if (r.finish === 'length') truncated++;
      chars += r.text.length;
    }
  }
  m.groups = groups.length;
  m.samples = all.length;
  m.reward_mean = mean(all);
  for (const [kind, rs] of perKind) {
    m[`reward_mean.${kind}`] = mean(rs);
    m[`samples.${kind}`] = rs.length;
  }
  if (perKind.has('pointwise')) m['judge_accuracy.pointwise'] = mean(perKind.get('pointwise') ?? []);
  if (perKind.has('pairwise')) m['judge_accuracy.pairwise'] = mean(perKind.get('pairwise') ?? []);
  m.groups_all_correct = allCorrect;
  m.groups_all_wrong = allWrong;
  m.groups_mixed = groups.length - allCorrect - allWrong;
  m.truncated_ratio = all.length ? truncated / all.length : 0;
  m.response_chars_mean = all.length ? chars / all.length : 0;
  return m;
}

/** Splits prompts into rollout shards of at most `shardSize`. */
export function shardPrompts<T>(items: readonly T[], shardSize: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += shardSize) out.push(items.slice(i, i + shardSize));
  return out;
}
