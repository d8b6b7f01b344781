// Judge-, reflection- and re-solve-format warm-up (SFT) pairs: the formats the model is asked to answer in
// the reward phase and at test time, built with the held-out eval builders from TRAIN problems and their
// checkpoint-independent wrong answer. The coordinator mixes them into every warm-up batch
// (JobSpec.warmupJudgeFraction). A judge target is the worked solution's reasoning (its box removed), an
// explicit check the small model can execute, then the verdict box.
import type { PromptItem } from '@spark/contract';
import { NO_FIRST_TEMPLATES, pointwisePrompt, resolvePrompt, TEMPLATES } from '../templates/index.js';
import type { Template, TemplateVariant } from '../templates/index.js';
import { buildJudgeItems, buildReflectionItems, wrongAnswerFor } from './judge.js';
import { tagValue } from './judge-diagnostics.js';

/** A train problem with a worked solution ending in `\boxed{answer}`. */
export interface WarmupSource {
  readonly id: string;
  readonly question: string;
  readonly answer: string;
  readonly solution: string;
}

/** One supervised warm-up pair. */
export interface WarmupPair {
  readonly prompt: string;
  readonly target: string;
}

/** The kinds of judge-format warm-up pair, cycled by warm-up position (judgeWarmupPair). */
export const JUDGE_WARMUP_KINDS = [
  'pointwise-yesno',
  'pointwise-ab',
  'pairwise',
  'pointwise-yesno/no-first',
  'pointwise-ab/no-first',
  'reflection',
  'resolve',
] as const;
export type JudgeWarmupKind = (typeof JUDGE_WARMUP_KINDS)[number];

/** The worked solution without its final `\boxed{…}` (the reasoning a judge writes before its verdict). */
export function reasoningOf(solution: string): string {
  const at = solution.lastIndexOf('\\boxed{');
  return (at >= 0 ? solution.slice(0, at) : solution).trimEnd();
}

/**
 * The comparison of a shown answer with the answer the reasoning reached, written so that every decision
 * comes after what it decides on: both numbers first, then each character pair (right-aligned, `_` pads the
 * shorter) followed by `=` or `x`, then `same` or `differ`: `84 vs 87: 88= 47x differ.` The earlier check
 * (`84!=87.`) asked for the operator before the second number was written, which the demo model got right
 * 38 % of the time (docs/results.md). Each string is cut to 40 characters; the outcome is decided on the
 * whole strings.
 */
export function compareCheck(shown: string, gold: string): string {
  const s = shown.slice(0, 40);
  const g = gold.slice(0, 40);
  const width = Math.max(s.length, g.length);
  const a = s.padStart(width, '_');
  const b = g.padStart(width, '_');
  const pairs: string[] = [];
  for (let i = 0; i < width; i++) pairs.push(`${a[i]}${b[i]}${a[i] === b[i] ? '=' : 'x'}`);
  return `${s} vs ${g}: ${pairs.join(' ')} ${shown === gold ? 'same' : 'differ'}.`;
}

/**
 * The explicit check a judge warm-up target writes between the reasoning and the verdict: each shown
 * answer compared with the gold answer (compareCheck); pairwise `A: <check> B: <check>`. Only warm-up
 * targets carry it; the reward never looks at the reasoning.
 */
export function judgeCheck(item: Pick<PromptItem, 'tags'>, gold: string): string {
  const wrong = wrongAnswerFor(gold);
  const [style, target] = item.tags;
  if (style === 'pairwise') {
    const [a, b] = target === 'slot-A' ? [gold, wrong] : [wrong, gold];
    return `A: ${compareCheck(a, gold)} B: ${compareCheck(b, gold)}`;
  }
  return compareCheck(target === 'correct' ? gold : wrongAnswerFor(gold), gold);
}

/**
 * One judge-, reflection- or re-solve-format warm-up pair for train problem `p` at warm-up position `pos`.
 * The kind cycles over JUDGE_WARMUP_KINDS: pointwise yes/no and a/b with the recycling templates (Yes/A
 * listed first) and with their option-order counterparts (No/B first), pairwise, reflection (the wrong
 * answer shown, target the worked solution) and the test-time re-solve prompt (`Not X. Solve again.`,
 * target the worked solution). Items (template, shown answer, slot) are drawn by the eval builders with a
 * per-position seed; the shown answer alternates between gold and wrong every cycle, so verdicts are
 * balanced.
 */
export function judgeWarmupPair(
  p: WarmupSource,
  variant: TemplateVariant,
  seed: number,
  pos: number,
): WarmupPair {
  const source = { id: `${p.id}#${pos}`, question: p.question, answer: p.answer };
  const kind = JUDGE_WARMUP_KINDS[pos % JUDGE_WARMUP_KINDS.length] as JudgeWarmupKind;
  const itemSeed = seed * 7919 + pos;
  if (kind === 'reflection') {
    const [item] = buildReflectionItems([source], { variant, seed: itemSeed });
    return { prompt: (item as PromptItem).text, target: p.solution };
  }
  if (kind === 'resolve')
    return { prompt: resolvePrompt(p.question, wrongAnswerFor(p.answer), variant), target: p.solution };
  // buildJudgeItems alternates targets by index: pad with a copy to draw the other target on odd cycles
  const round = Math.floor(pos / JUDGE_WARMUP_KINDS.length) % 2;
  const items = buildJudgeItems(round === 0 ? [source] : [source, source], { variant, seed: itemSeed });
  const style = kind.replace('/no-first', '') as 'pointwise-yesno' | 'pointwise-ab' | 'pairwise';
  const offset = style === 'pointwise-yesno' ? 0 : style === 'pointwise-ab' ? 1 : 2;
  let item = items[round * 3 + offset] as PromptItem;
  if (kind.endsWith('/no-first') && style !== 'pairwise') {
    const id = tagValue(item.tags, 'template');
    const index = TEMPLATES[style][variant].findIndex((t) => t.id === id);
    const template = NO_FIRST_TEMPLATES[style][variant][index] as Template;
    const shown = item.tags[1] === 'correct' ? p.answer : wrongAnswerFor(p.answer);
    item = { ...item, text: pointwisePrompt(template, p.question, shown) };
  }
  const reasoning = reasoningOf(p.solution);
  return {
    prompt: item.text,
    target: `${reasoning ? `${reasoning} ` : ''}${judgeCheck(item, p.answer)} \\boxed{${item.label}}`,
  };
}
