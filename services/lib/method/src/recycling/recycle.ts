// SPARK's recycling (docs/method.md "Recycling") as pure functions: one policy-phase prompt group (question, gold
// answer, G responses with their extracted answers and 0/1 rewards) becomes at most one judge item and at
// most one reflection item; a step's judge items are capped at B/2. Every random choice comes from the
// caller's seeded Rng, so the same groups and seed always give the same items.
//
// Judge rules (only extracted answers are judged, never the reasoning):
//   all correct → pointwise on one correct answer (label "Yes" / "A");
//   all wrong   → pointwise on a random wrong answer that has a boxed answer (label "No" / "B"); none → skip;
//   mixed       → p = 0.3 pointwise (target correct/incorrect 50/50, a random response with that reward),
//                 else pairwise (one random correct, one random wrong, correct in slot A or B with p = 0.5).
//   Pointwise label style: yes/no or a/b, 50/50. Responses without an extracted answer are never judged;
//   where a drawn target has none, the other target (pointwise) or pointwise (instead of pairwise) is used.
// Reflection rules (only groups with at least one wrong response): CoT or answer mode 50/50; neutral
// (≈2/3) or "it is wrong" (≈1/3) wording; a random wrong response's full text (CoT) or extracted answer
// (answer mode; falls back to CoT mode when no wrong response has one, and CoT falls back to answer mode
// when no wrong text fits `maxCotChars`); label = the ORIGINAL gold answer.
import { InvalidArgumentError } from '@spark/runtime/errors';
import type { Rng } from '../tasks/random.js';
import {
  pairwisePrompt,
  pointwisePrompt,
  reflectionPrompt,
  TEMPLATES,
  type TemplateKind,
  type TemplateVariant,
} from '../templates/index.js';

/** One sampled response of a policy-phase group. */
export interface RecycleResponse {
  /** The full response text (the reasoning, "CoT"). */
  readonly text: string;
  /** The extracted final answer (first `\boxed{}`), or null when the response has none. */
  readonly answer: string | null;
  /** The verifier's reward. */
  readonly reward: 0 | 1;
}

/** One policy-phase prompt group. */
export interface RecycleGroup {
  /** Id of the source prompt (copied into the items for tracing). */
  readonly id?: string;
  /** The question as shown to the policy, WITHOUT the answer-format instruction. */
  readonly question: string;
  /** The gold answer (the label of the original problem). */
  readonly gold: string;
  readonly responses: readonly RecycleResponse[];
}

export type JudgeStyle = 'pointwise-yesno' | 'pointwise-ab' | 'pairwise';
export type JudgeLabel = 'Yes' | 'No' | 'A' | 'B';

/** A recycled judge prompt; its label is verified like any answer. */
export interface JudgeItem {
  readonly kind: 'judge';
  readonly style: JudgeStyle;
  readonly prompt: string;
  readonly label: JudgeLabel;
  readonly templateId: string;
  /** Pointwise: whether the judged answer was correct. Pairwise: the slot of the correct answer. */
  readonly target: 'correct' | 'incorrect' | 'slot-A' | 'slot-B';
  /** The group's case: all correct, all wrong, or mixed. */
  readonly groupCase: 'all-correct' | 'all-wrong' | 'mixed';
  readonly sourceId?: string;
}

/** A recycled reflection prompt; its label is the original gold answer. */
export interface ReflectionItem {
  readonly kind: 'reflection';
  readonly mode: 'cot' | 'answer';
  readonly tone: 'neutral' | 'wrong';
  readonly prompt: string;
  readonly label: string;
  readonly templateId: string;
  readonly sourceId?: string;
}

/** Knobs of the recycling rules; defaults are the reference's. */
export interface RecycleOptions {
  /** Template wording: `full` (default) or `short` for small models. */
  readonly variant?: TemplateVariant;
  /** Mixed groups: probability of a pointwise item instead of a pairwise one (default 0.3). */
  readonly pPointwiseMixed?: number;
  /** Probability of the yes/no label style for pointwise items (default 0.5; else a/b). */
  readonly pYesNo?: number;
  /** Probability of the CoT mode for reflection items (default 0.5; else answer mode). */
  readonly pReflectionCot?: number;
  /** Probability of the "it is wrong" wording for reflection items (default 1/3; else neutral). */
  readonly pWrongTone?: number;
  /**
   * Longest response text used in CoT mode (default: no limit). Longer wrong responses are not shown in
   * full; when no wrong response fits, the answer mode is used — useful for small-context models.
   */
  readonly maxCotChars?: number;
  /** Produce judge items (default true). */
  readonly judge?: boolean;
  /** Produce reflection items (default true). */
  readonly reflection?: boolean;
}

/** What one group yields. */
export interface RecycledGroup {
  readonly judge: JudgeItem | null;
  readonly reflection: ReflectionItem | null;
}

interface Resolved {
  variant: TemplateVariant;
  pPointwiseMixed: number;
  pYesNo: number;
  pReflectionCot: number;
  pWrongTone: number;
  maxCotChars: number;
  judge: boolean;
  reflection: boolean;
}

function resolve(opts: RecycleOptions): Resolved {
  const r: Resolved = {
    variant: opts.variant ?? 'full',
    pPointwiseMixed: opts.pPointwiseMixed ?? 0.3,
    pYesNo: opts.pYesNo ?? 0.5,
    pReflectionCot: opts.pReflectionCot ?? 0.5,
    pWrongTone: opts.pWrongTone ?? 1 / 3,
    maxCotChars: opts.maxCotChars ?? Number.POSITIVE_INFINITY,
    judge: opts.judge ?? true,
    reflection: opts.reflection ?? true,
  };
  const problems: string[] = [];
  for (const key of ['pPointwiseMixed', 'pYesNo', 'pReflectionCot', 'pWrongTone'] as const) {
    const p = r[key];
    if (!(p >= 0 && p <= 1)) problems.push(`${key} must be a probability in [0, 1], got ${p}`);
  }
  if (!(r.maxCotChars >= 0)) problems.push('maxCotChars must be >= 0');
  if (r.variant !== 'full' && r.variant !== 'short') problems.push(`variant must be "full" or "short"`);
  if (problems.length) throw new InvalidArgumentError('invalid recycling options', problems);
  return r;
}

function validateGroup(g: RecycleGroup): void {
  const problems: string[] = [];
  if (typeof g.question !== 'string' || g.question.length === 0)
    problems.push('question must be a non-empty string');
  if (typeof g.gold !== 'string' || g.gold.length === 0) problems.push('gold must be a non-empty string');
  const responses: readonly RecycleResponse[] = g.responses;
  if (!Array.isArray(responses)) problems.push('responses must be an array');
  else
    responses.forEach((r: RecycleResponse, i: number) => {
      if (r.reward !== 0 && r.reward !== 1) problems.push(`responses[${i}].reward must be 0 or 1`);
      if (typeof r.text !== 'string') problems.push(`responses[${i}].text must be a string`);
      if (r.answer !== null && typeof r.answer !== 'string')
        problems.push(`responses[${i}].answer must be a string or null`);
    });
  if (problems.length)
    throw new InvalidArgumentError(`invalid recycling group${g.id ? ` ${g.id}` : ''}`, problems);
}

function withSource<T extends object>(item: T, id: string | undefined): T & { sourceId?: string } {
  return id === undefined ? item : { ...item, sourceId: id };
}

function pointwiseItem(
  rng: Rng,
  o: Resolved,
  group: RecycleGroup,
  answer: string,
  correct: boolean,
  groupCase: JudgeItem['groupCase'],
): JudgeItem {
  const style: JudgeStyle = rng.bool(o.pYesNo) ? 'pointwise-yesno' : 'pointwise-ab';
  const template = rng.pick(TEMPLATES[style][o.variant]);
  const label: JudgeLabel = style === 'pointwise-yesno' ? (correct ? 'Yes' : 'No') : correct ? 'A' : 'B';
  return withSource(
    {
      kind: 'judge' as const,
      style,
      prompt: pointwisePrompt(template, group.question, answer),
      label,
      templateId: template.id,
      target: correct ? ('correct' as const) : ('incorrect' as const),
      groupCase,
    },
    group.id,
  );
}

function pairwiseItem(rng: Rng, o: Resolved, group: RecycleGroup, right: string, wrong: string): JudgeItem {
  const template = rng.pick(TEMPLATES.pairwise[o.variant]);
  const correctInA = rng.bool(0.5);
  const [a, b] = correctInA ? [right, wrong] : [wrong, right];
  return withSource(
    {
      kind: 'judge' as const,
      style: 'pairwise' as const,
      prompt: pairwisePrompt(template, group.question, a, b),
      label: correctInA ? ('A' as const) : ('B' as const),
      templateId: template.id,
      target: correctInA ? ('slot-A' as const) : ('slot-B' as const),
      groupCase: 'mixed' as const,
    },
    group.id,
  );
}

/** The judge item of one group, or null (no response with an extracted answer, or judge disabled). */
function judgeOf(rng: Rng, o: Resolved, group: RecycleGroup): JudgeItem | null {
  const rs = group.responses;
  if (rs.length === 0) return null;
  const correct = rs.filter((r) => r.reward === 1 && r.answer !== null).map((r) => r.answer as string);
  const wrong = rs.filter((r) => r.reward === 0 && r.answer !== null).map((r) => r.answer as string);
  const nCorrect = rs.filter((r) => r.reward === 1).length;
  if (nCorrect === rs.length) {
    if (correct.length === 0) return null;
    return pointwiseItem(rng, o, group, rng.pick(correct), true, 'all-correct');
  }
  if (nCorrect === 0) {
    if (wrong.length === 0) return null;
    return pointwiseItem(rng, o, group, rng.pick(wrong), false, 'all-wrong');
  }
  if (correct.length === 0 && wrong.length === 0) return null;
  const pointwise = rng.bool(o.pPointwiseMixed);
  if (pointwise || correct.length === 0 || wrong.length === 0) {
    let targetCorrect = rng.bool(0.5);
    if (targetCorrect && correct.length === 0) targetCorrect = false;
    if (!targetCorrect && wrong.length === 0) targetCorrect = true;
    const answer = rng.pick(targetCorrect ? correct : wrong);
    return pointwiseItem(rng, o, group, answer, targetCorrect, 'mixed');
  }
  return pairwiseItem(rng, o, group, rng.pick(correct), rng.pick(wrong));
}

/** The reflection item of one group, or null (no wrong response, or reflection disabled). */
function reflectionOf(rng: Rng, o: Resolved, group: RecycleGroup): ReflectionItem | null {
  const wrong = group.responses.filter((r) => r.reward === 0);
  if (wrong.length === 0) return null;
  const wrongWithAnswer = wrong.filter((r) => r.answer !== null);
  const cotFits = wrong.filter((r) => r.text.length <= o.maxCotChars);
  let mode: 'cot' | 'answer' = rng.bool(o.pReflectionCot) ? 'cot' : 'answer';
  if (mode === 'answer' && wrongWithAnswer.length === 0) mode = 'cot';
  if (mode === 'cot' && cotFits.length === 0) mode = 'answer';
  if (mode === 'answer' && wrongWithAnswer.length === 0) return null; // nothing usable to show
  const tone: 'neutral' | 'wrong' = rng.bool(o.pWrongTone) ? 'wrong' : 'neutral';
  const provided = mode === 'cot' ? rng.pick(cotFits).text : (rng.pick(wrongWithAnswer).answer as string);
  const kind: TemplateKind = `reflection-${tone}-${mode}`;
  const template = rng.pick(TEMPLATES[kind][o.variant]);
  return withSource(
    {
      kind: 'reflection' as const,
      mode,
      tone,
      prompt: reflectionPrompt(template, group.question, provided),
      label: group.gold,
      templateId: template.id,
    },
    group.id,
  );
}

/**
 * Recycles one group into at most one judge item and at most one reflection item. The judge and
 * reflection draws use independent child streams of `rng`, so turning one kind off does not change the
 * other kind's items.
 */
export function recycleGroup(group: RecycleGroup, rng: Rng, opts: RecycleOptions = {}): RecycledGroup {
  const o = resolve(opts);
  validateGroup(group);
  const judgeRng = rng.fork('judge');
  const reflectionRng = rng.fork('reflection');
  rng.nextU32(); // advance the parent so consecutive calls get fresh child streams
  return {
    judge: o.judge ? judgeOf(judgeRng, o, group) : null,
    reflection: o.reflection ? reflectionOf(reflectionRng, o, group) : null,
  };
}

/** Options of one step's recycling. */
export interface RecycleStepOptions extends RecycleOptions {
  /** Judge items kept per step (default: floor(B/2) with B = the number of groups). */
  readonly maxJudge?: number;
  /** Reflection items kept per step (default: floor(B/2), as the method keeps at most B/2 a step). */
  readonly maxReflection?: number;
  /**
   * Ours, off by default: before the cap, drop random pointwise items of the more frequent target
   * (correct / incorrect) until both targets are equally many, so a policy far below (or above) 50 %
   * accuracy does not teach its judge the label prior ("No" for everything). Pairwise items are balanced
   * by construction and always kept.
   */
  readonly balanceLabels?: boolean;
}

/** The judge items with random pointwise items of the majority target dropped until the targets are even. */
function balancePointwise(items: readonly JudgeItem[], rng: Rng): JudgeItem[] {
  const right = items.filter((j) => j.style !== 'pairwise' && j.target === 'correct');
  const wrong = items.filter((j) => j.style !== 'pairwise' && j.target === 'incorrect');
  const n = Math.min(right.length, wrong.length);
  const keep = new Set<JudgeItem>([
    ...(right.length > n ? rng.sample(right, n) : right),
    ...(wrong.length > n ? rng.sample(wrong, n) : wrong),
  ]);
  return items.filter((j) => j.style === 'pairwise' || keep.has(j));
}

/** What one policy step yields for the buffer. */
export interface RecycledStep {
  readonly judge: JudgeItem[];
  readonly reflection: ReflectionItem[];
  /** Judge candidates before the cap. */
  readonly judgeCandidates: number;
  /** Reflection candidates before the cap. */
  readonly reflectionCandidates: number;
}

/**
 * Recycles all groups of a policy step, then keeps a random `maxJudge` (default B/2) judge items when there
 * are more (in group order), and likewise a random `maxReflection` (default B/2) reflection items. With both
 * caps at B/2 a policy step adds at most B items to the buffer, the B that the reward phase takes out, so
 * the buffer does not grow over a job and reward prompts stay as fresh as the method intends.
 */
export function recycleStep(
  groups: readonly RecycleGroup[],
  rng: Rng,
  opts: RecycleStepOptions = {},
): RecycledStep {
  const maxJudge = opts.maxJudge ?? Math.floor(groups.length / 2);
  const maxReflection = opts.maxReflection ?? Math.floor(groups.length / 2);
  if (!(maxJudge >= 0) || !(maxReflection >= 0)) {
    throw new InvalidArgumentError('invalid recycling step options', [
      'maxJudge and maxReflection must be >= 0',
    ]);
  }
  const judge: JudgeItem[] = [];
  const reflection: ReflectionItem[] = [];
  for (const g of groups) {
    const r = recycleGroup(g, rng, opts);
    if (r.judge) judge.push(r.judge);
    if (r.reflection) reflection.push(r.reflection);
  }
  const capRng = rng.fork('cap');
  const usable = opts.balanceLabels ? balancePointwise(judge, rng.fork('balance')) : judge;
  return {
    judge: usable.length > maxJudge ? capRng.sample(usable, maxJudge) : usable,
    reflection: reflection.length > maxReflection ? capRng.sample(reflection, maxReflection) : reflection,
    judgeCandidates: judge.length,
    reflectionCandidates: reflection.length,
  };
}
