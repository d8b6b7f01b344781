// Option-order counterparts of the pointwise judge templates, for the reward benchmark only (recycling and
// training never use them). Every recycling template lists the "correct" option first (`\boxed{Yes}` before
// `\boxed{No}`, A before B), so a judge that copies the first option it was shown, or prefers the first
// listed, is indistinguishable from one that judges. Each template here is its recycling template with the
// options listed in the other order and the meaning unchanged (Yes = correct; A = correct, B = incorrect),
// so a benchmark item and its counterpart differ only in option order. Ids: `<recycling id>/no-first`.
import type { Template, TemplateVariant } from './render.js';
import { TEMPLATES } from './sets.js';

const YESNO_FULL = [
  'You are an expert evaluator. Given a question and a candidate answer, decide whether the answer is correct. ' +
    'Think step by step, then give your verdict as \\boxed{No} if the answer is not correct or \\boxed{Yes} if it is.' +
    '\n\nQuestion: {{question}}\n\nAnswer: {{answer}}\n\nIs the answer correct?',
  'Please act as an impartial judge of a final answer. Reason step by step about the question, then put your ' +
    'judgement in \\boxed{}: No if the answer is not correct, Yes otherwise.' +
    '\n\n[Question]\n{{question}}\n\n[Answer]\n{{answer}}\n\nIs this answer correct?',
  'Your task is to verify an answer. Work through the question yourself, step by step, and compare your result ' +
    'with the given answer. Finish with \\boxed{No} if they do not agree and \\boxed{Yes} if they do.' +
    '\n\nQuestion:\n{{question}}\n\nGiven answer:\n{{answer}}\n\nVerdict:',
  'As a careful grader, assess whether the proposed final answer to the problem below is right. Explain your ' +
    'reasoning briefly, then answer with \\boxed{No} or \\boxed{Yes}.' +
    '\n\nProblem: {{question}}\n\nProposed answer: {{answer}}\n\nIs the proposed answer right?',
  'Evaluate the following answer. Solve the problem step by step, decide if the answer is correct, and write the ' +
    'verdict inside \\boxed{}, using exactly No or Yes.' +
    '\n\n### Question\n{{question}}\n\n### Answer\n{{answer}}\n\nIs it correct?',
  "You are grading a student. Check the student's final answer to the question by reasoning step by step. " +
    'Reply \\boxed{No} if it is wrong and \\boxed{Yes} if it is correct.' +
    "\n\nQuestion: {{question}}\nStudent's answer: {{answer}}\n\nCorrect or not?",
];
const YESNO_SHORT = [
  'Judge the answer.\nQ: {{question}}\nGiven: {{answer}}\nCorrect? \\boxed{No} or \\boxed{Yes}.',
  'Q: {{question}}\nGiven: {{answer}}\nRight? \\boxed{No} or \\boxed{Yes}.',
  'Check: {{question}}\nAnswer: {{answer}}\nRight? \\boxed{No}/\\boxed{Yes}.',
];
const AB_FULL = [
  'You are an expert evaluator. Given a question and a candidate answer, decide whether the answer is correct. ' +
    'Think step by step, then choose one option and put its letter in \\boxed{}.' +
    '\n\nQuestion: {{question}}\n\nAnswer: {{answer}}\n\nOptions:\nB. The answer is incorrect.\nA. The answer is correct.',
  'Please act as an impartial judge. Reason step by step about whether the final answer below solves the ' +
    'question, then reply with \\boxed{B} (incorrect) or \\boxed{A} (correct).' +
    '\n\n[Question]\n{{question}}\n\n[Answer]\n{{answer}}\n\nYour choice:',
  'Verify the answer to the problem below by working it out step by step. Then pick: B if the answer is ' +
    'not correct, A if it is. Write the letter inside \\boxed{}.' +
    '\n\nProblem:\n{{question}}\n\nCandidate answer:\n{{answer}}\n\n(B) incorrect  (A) correct',
  'As a careful grader, decide whether the proposed answer is right. Give brief reasoning and finish with the ' +
    'letter of your choice in \\boxed{}.' +
    '\n\nQuestion: {{question}}\nProposed answer: {{answer}}\n\nB) wrong\nA) right',
  'Evaluate the answer below. Solve the question step by step, compare, and box your option letter: ' +
    '\\boxed{B} means the answer is incorrect, \\boxed{A} means it is correct.' +
    '\n\n### Question\n{{question}}\n\n### Answer\n{{answer}}\n\nWhich option?',
  "You are grading a student's final answer. Reason step by step, then choose B (incorrect) or A (correct) " +
    'and put the letter in \\boxed{}.' +
    "\n\nQuestion: {{question}}\nStudent's answer: {{answer}}\n\nB: incorrect\nA: correct",
];
const AB_SHORT = [
  'Judge the answer.\nQ: {{question}}\nGiven: {{answer}}\nB) wrong A) right. Letter in \\boxed{}.',
  'Q: {{question}}\nAnswer: {{answer}}\n\\boxed{B} if wrong, \\boxed{A} if right.',
  'Check: {{question}}\nGiven: {{answer}}\nB=incorrect, A=correct. \\boxed{B} or \\boxed{A}.',
];

/** The pointwise kinds whose option order the benchmark varies. */
export type PointwiseKind = 'pointwise-yesno' | 'pointwise-ab';

function counterparts(kind: PointwiseKind, variant: TemplateVariant, texts: readonly string[]): Template[] {
  const originals = TEMPLATES[kind][variant];
  if (originals.length !== texts.length)
    throw new Error(`${kind}/${variant}: ${texts.length} option-order templates for ${originals.length}`);
  return originals.map((t, i) =>
    Object.freeze({ id: `${t.id}/no-first`, variant, text: texts[i] as string }),
  );
}

/**
 * The option-order counterpart of every pointwise template, index for index: `NO_FIRST_TEMPLATES[kind]
 * [variant][i]` is `TEMPLATES[kind][variant][i]` with the incorrect option (No, B) listed first.
 */
export const NO_FIRST_TEMPLATES: Readonly<
  Record<PointwiseKind, Readonly<Record<TemplateVariant, readonly Template[]>>>
> = Object.freeze({
  'pointwise-yesno': Object.freeze({
    full: Object.freeze(counterparts('pointwise-yesno', 'full', YESNO_FULL)),
    short: Object.freeze(counterparts('pointwise-yesno', 'short', YESNO_SHORT)),
  }),
  'pointwise-ab': Object.freeze({
    full: Object.freeze(counterparts('pointwise-ab', 'full', AB_FULL)),
    short: Object.freeze(counterparts('pointwise-ab', 'short', AB_SHORT)),
  }),
});

/** The option-order counterpart of a recycling pointwise template (by id), or undefined. */
export function noFirstCounterpart(template: Template): Template | undefined {
  for (const kind of ['pointwise-yesno', 'pointwise-ab'] as const) {
    const i = TEMPLATES[kind][template.variant].findIndex((t) => t.id === template.id);
    if (i >= 0) return NO_FIRST_TEMPLATES[kind][template.variant][i];
  }
  return undefined;
}

/** Which option a pointwise template lists first: `yes-first` (Yes or A first) or `no-first`. */
export function optionOrderOf(text: string): 'yes-first' | 'no-first' | null {
  const m = /\\boxed\{(Yes|No|A|B)\}|\b(Yes|No)\b|(?:^|[\s(])([AB])(?=[).:=]| \(| if| means)/m.exec(
    text.replace(/\{\{[a-z_]+\}\}/g, ''),
  );
  const first = m ? (m[1] ?? m[2] ?? m[3]) : undefined;
  if (first === undefined) return null;
  return first === 'Yes' || first === 'A' ? 'yes-first' : 'no-first';
}
