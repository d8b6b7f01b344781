// The prompt template sets of SPARK's recycling (docs/method.md "Recycling") and of test-time self-reflection
// (§4). Each kind has several paraphrases in two variants: `full` (wording close to the reference's
// intent: act as an evaluator, reason step by step, verdict in `\boxed{}`; then the question, the
// answer(s) and a cue) and `short` (a few words, for small character-level models whose context is a few
// hundred characters). Every judge template asks for its verdict in `\boxed{}` (**Ours**: the reference
// says `\box{}` but only rewards `\boxed{}`). The FIRST pointwise yes/no template of a variant is the one
// used for self-judging at test time. Ids are stable: `<kind>/<variant>/<n>`.
import type { Template, TemplateVariant } from './render.js';

/** The answer-format instruction of docs/method.md "Test-time self-reflection", appended to every problem prompt. */
export const ANSWER_INSTRUCTION_FULL =
  "Please first conduct reasoning, and then answer the question. Repeat the final answer using a '\\boxed{}'.";
/** The short answer-format instruction for small models (same contract: the final answer in `\boxed{}`). */
export const ANSWER_INSTRUCTION_SHORT = 'Answer in \\boxed{}.';

/** The answer-format instruction of a variant. */
export function answerInstruction(variant: TemplateVariant): string {
  return variant === 'full' ? ANSWER_INSTRUCTION_FULL : ANSWER_INSTRUCTION_SHORT;
}

/**
 * The prompt of an ordinary problem: the question, a newline, the answer-format instruction. Used for the
 * policy phase, for reflection labels' problems and for evaluation.
 */
export function problemPrompt(question: string, variant: TemplateVariant = 'full'): string {
  return `${question}\n${answerInstruction(variant)}`;
}

/** The template kinds. */
export type TemplateKind =
  | 'pointwise-yesno'
  | 'pointwise-ab'
  | 'pairwise'
  | 'reflection-neutral-cot'
  | 'reflection-neutral-answer'
  | 'reflection-wrong-cot'
  | 'reflection-wrong-answer'
  | 'resolve';

function set(kind: TemplateKind, variant: TemplateVariant, texts: readonly string[]): readonly Template[] {
  return Object.freeze(
    texts.map((text, i) => Object.freeze({ id: `${kind}/${variant}/${i + 1}`, variant, text })),
  );
}

// ---- pointwise yes/no: placeholders {{question}} {{answer}}; label "Yes" if correct else "No" --------

const POINTWISE_YESNO_FULL = [
  'You are an expert evaluator. Given a question and a candidate answer, decide whether the answer is correct. ' +
    'Think step by step, then give your verdict as \\boxed{Yes} if the answer is correct or \\boxed{No} if it is not.' +
    '\n\nQuestion: {{question}}\n\nAnswer: {{answer}}\n\nIs the answer correct?',
  'Please act as an impartial judge of a final answer. Reason step by step about the question, then put your ' +
    'judgement in \\boxed{}: Yes if the answer is correct, No otherwise.' +
    '\n\n[Question]\n{{question}}\n\n[Answer]\n{{answer}}\n\nIs this answer correct?',
  'Your task is to verify an answer. Work through the question yourself, step by step, and compare your result ' +
    'with the given answer. Finish with \\boxed{Yes} if they agree and \\boxed{No} if they do not.' +
    '\n\nQuestion:\n{{question}}\n\nGiven answer:\n{{answer}}\n\nVerdict:',
  'As a careful grader, assess whether the proposed final answer to the problem below is right. Explain your ' +
    'reasoning briefly, then answer with \\boxed{Yes} or \\boxed{No}.' +
    '\n\nProblem: {{question}}\n\nProposed answer: {{answer}}\n\nIs the proposed answer right?',
  'Evaluate the following answer. Solve the problem step by step, decide if the answer is correct, and write the ' +
    'verdict inside \\boxed{}, using exactly Yes or No.' +
    '\n\n### Question\n{{question}}\n\n### Answer\n{{answer}}\n\nIs it correct?',
  "You are grading a student. Check the student's final answer to the question by reasoning step by step. " +
    'Reply \\boxed{Yes} if it is correct and \\boxed{No} if it is wrong.' +
    "\n\nQuestion: {{question}}\nStudent's answer: {{answer}}\n\nCorrect or not?",
];
const POINTWISE_YESNO_SHORT = [
  'Judge the answer.\nQ: {{question}}\nGiven: {{answer}}\nCorrect? \\boxed{Yes} or \\boxed{No}.',
  'Q: {{question}}\nGiven: {{answer}}\nRight? \\boxed{Yes} or \\boxed{No}.',
  'Check: {{question}}\nAnswer: {{answer}}\nRight? \\boxed{Yes}/\\boxed{No}.',
];

// ---- pointwise a/b: option A = correct, B = incorrect; label "A" if correct else "B" --------------------

const POINTWISE_AB_FULL = [
  'You are an expert evaluator. Given a question and a candidate answer, decide whether the answer is correct. ' +
    'Think step by step, then choose one option and put its letter in \\boxed{}.' +
    '\n\nQuestion: {{question}}\n\nAnswer: {{answer}}\n\nOptions:\nA. The answer is correct.\nB. The answer is incorrect.',
  'Please act as an impartial judge. Reason step by step about whether the final answer below solves the ' +
    'question, then reply with \\boxed{A} (correct) or \\boxed{B} (incorrect).' +
    '\n\n[Question]\n{{question}}\n\n[Answer]\n{{answer}}\n\nYour choice:',
  'Verify the answer to the problem below by working it out step by step. Then pick: A if the answer is ' +
    'correct, B if it is not. Write the letter inside \\boxed{}.' +
    '\n\nProblem:\n{{question}}\n\nCandidate answer:\n{{answer}}\n\n(A) correct  (B) incorrect',
  'As a careful grader, decide whether the proposed answer is right. Give brief reasoning and finish with the ' +
    'letter of your choice in \\boxed{}.' +
    '\n\nQuestion: {{question}}\nProposed answer: {{answer}}\n\nA) right\nB) wrong',
  'Evaluate the answer below. Solve the question step by step, compare, and box your option letter: ' +
    '\\boxed{A} means the answer is correct, \\boxed{B} means it is incorrect.' +
    '\n\n### Question\n{{question}}\n\n### Answer\n{{answer}}\n\nWhich option?',
  "You are grading a student's final answer. Reason step by step, then choose A (correct) or B (incorrect) " +
    'and put the letter in \\boxed{}.' +
    "\n\nQuestion: {{question}}\nStudent's answer: {{answer}}\n\nA: correct\nB: incorrect",
];
const POINTWISE_AB_SHORT = [
  'Judge the answer.\nQ: {{question}}\nGiven: {{answer}}\nA) right B) wrong. Letter in \\boxed{}.',
  'Q: {{question}}\nAnswer: {{answer}}\n\\boxed{A} if right, \\boxed{B} if wrong.',
  'Check: {{question}}\nGiven: {{answer}}\nA=correct, B=incorrect. \\boxed{A} or \\boxed{B}.',
];

// ---- pairwise: {{question}} {{answer_a}} {{answer_b}}; label = slot letter of the correct answer ---------

const PAIRWISE_FULL = [
  'You are an expert evaluator. Two answers to the same question are given below, and exactly one of them is ' +
    'correct. Think step by step, then put the letter of the correct answer in \\boxed{}.' +
    '\n\nQuestion: {{question}}\n\nAnswer A: {{answer_a}}\n\nAnswer B: {{answer_b}}\n\nWhich answer is correct?',
  'Please act as an impartial judge and compare two candidate answers. Reason step by step about the question, ' +
    'decide which answer is right, and reply with \\boxed{A} or \\boxed{B}.' +
    '\n\n[Question]\n{{question}}\n\n[Answer A]\n{{answer_a}}\n\n[Answer B]\n{{answer_b}}\n\nThe correct answer is:',
  'Solve the problem below step by step and decide which of the two given answers matches the correct result. ' +
    'Write A or B inside \\boxed{}.' +
    '\n\nProblem:\n{{question}}\n\n(A) {{answer_a}}\n(B) {{answer_b}}\n\nYour choice:',
  'As a careful grader, compare the two final answers to the question. One is right and one is wrong. Explain ' +
    'briefly, then give the letter of the right one in \\boxed{}.' +
    '\n\nQuestion: {{question}}\nFirst answer (A): {{answer_a}}\nSecond answer (B): {{answer_b}}',
  'Which of these answers is correct? Work through the question step by step, then box your choice, ' +
    '\\boxed{A} or \\boxed{B}.' +
    '\n\n### Question\n{{question}}\n\n### A\n{{answer_a}}\n\n### B\n{{answer_b}}',
  'Two students answered the same question; only one is correct. Check both by reasoning step by step and ' +
    'put the letter of the correct student in \\boxed{}.' +
    '\n\nQuestion: {{question}}\nStudent A: {{answer_a}}\nStudent B: {{answer_b}}\n\nWho is correct?',
];
const PAIRWISE_SHORT = [
  'Which is right?\nQ: {{question}}\nA: {{answer_a}}\nB: {{answer_b}}\n\\boxed{A} or \\boxed{B}.',
  'Q: {{question}}\nA) {{answer_a}} B) {{answer_b}}\nOne is right. \\boxed{A} or \\boxed{B}?',
  'Pick the correct answer.\n{{question}}\nA: {{answer_a}}\nB: {{answer_b}}\nLetter in \\boxed{}.',
];

// ---- reflection: {{question}} {{provided}} {{instruction}}; label = the original gold answer -------------

const NEUTRAL_COT_FULL = [
  'Below is a question and a proposed solution. Check the solution carefully. If it is correct, restate its ' +
    'reasoning and final answer; otherwise, give the correct reasoning and the correct final answer.' +
    '\n\nQuestion: {{question}}\n\nProposed solution: {{provided}}\n\n{{instruction}}',
  'Here is a problem together with an attempted solution. Review the attempt step by step. Keep it if it is ' +
    'right; if you find a mistake, fix it and reach the correct answer.' +
    '\n\nProblem: {{question}}\n\nAttempt: {{provided}}\n\n{{instruction}}',
  'Read the question and the reasoning below. Verify each step. If the reasoning holds, repeat its final ' +
    'answer; if not, write a correct solution.' +
    '\n\nQuestion:\n{{question}}\n\nReasoning:\n{{provided}}\n\n{{instruction}}',
  'A solution to the following question has been suggested. Decide whether it is sound. Confirm it if so, ' +
    'otherwise correct it and give the right final answer.' +
    '\n\n### Question\n{{question}}\n\n### Suggested solution\n{{provided}}\n\n{{instruction}}',
];
const NEUTRAL_COT_SHORT = [
  'Q: {{question}}\nWork: {{provided}}\nCheck it; fix it if wrong. {{instruction}}',
  'Check this work.\n{{question}}\nWork: {{provided}}\n{{instruction}}',
];
const NEUTRAL_ANSWER_FULL = [
  'Below is a question and a proposed answer. Check the answer carefully. If it is correct, restate it with ' +
    'your reasoning; otherwise, give the correct reasoning and the correct final answer.' +
    '\n\nQuestion: {{question}}\n\nProposed answer: {{provided}}\n\n{{instruction}}',
  'Here is a problem together with a candidate answer. Solve the problem step by step and check the ' +
    'candidate. Keep it if it is right; if it is wrong, find the correct answer.' +
    '\n\nProblem: {{question}}\n\nCandidate answer: {{provided}}\n\n{{instruction}}',
  'Read the question and the answer below. Verify the answer by reasoning step by step. If it holds, repeat ' +
    'it; if not, give the correct one.' +
    '\n\nQuestion:\n{{question}}\n\nAnswer:\n{{provided}}\n\n{{instruction}}',
  'An answer to the following question has been suggested. Decide whether it is right. Confirm it if so, ' +
    'otherwise work out the correct final answer.' +
    '\n\n### Question\n{{question}}\n\n### Suggested answer\n{{provided}}\n\n{{instruction}}',
];
const NEUTRAL_ANSWER_SHORT = [
  'Q: {{question}}\nGiven: {{provided}}\nCheck it; fix it if wrong. {{instruction}}',
  'Is {{provided}} right?\n{{question}}\n{{instruction}}',
];
const WRONG_COT_FULL = [
  'Below is a question and an incorrect solution. Ignore the incorrect solution and solve the question from ' +
    'scratch, reasoning step by step.' +
    '\n\nQuestion: {{question}}\n\nIncorrect solution: {{provided}}\n\n{{instruction}}',
  'The attempt below contains a mistake. Do not rely on it: work the problem out again on your own and reach ' +
    'the correct answer.' +
    '\n\nProblem: {{question}}\n\nFlawed attempt: {{provided}}\n\n{{instruction}}',
  'This reasoning is wrong. Set it aside and solve the question properly, step by step.' +
    '\n\nQuestion:\n{{question}}\n\nWrong reasoning:\n{{provided}}\n\n{{instruction}}',
  'A previous solution to this question was incorrect. Start over and give a correct solution.' +
    '\n\n### Question\n{{question}}\n\n### Incorrect solution\n{{provided}}\n\n{{instruction}}',
];
const WRONG_COT_SHORT = [
  'Q: {{question}}\nWrong work: {{provided}}\nSolve again. {{instruction}}',
  'This is wrong: {{provided}}\nRedo: {{question}}\n{{instruction}}',
];
const WRONG_ANSWER_FULL = [
  'Below is a question and an incorrect answer. Ignore the incorrect answer and solve the question from ' +
    'scratch, reasoning step by step.' +
    '\n\nQuestion: {{question}}\n\nIncorrect answer: {{provided}}\n\n{{instruction}}',
  'The answer below is wrong. Do not rely on it: work the problem out again on your own and reach the ' +
    'correct answer.' +
    '\n\nProblem: {{question}}\n\nWrong answer: {{provided}}\n\n{{instruction}}',
  'Someone answered this question incorrectly. Solve it properly, step by step.' +
    '\n\nQuestion:\n{{question}}\n\nIncorrect answer:\n{{provided}}\n\n{{instruction}}',
  'A previous answer to this question was incorrect. Start over and give the correct final answer.' +
    '\n\n### Question\n{{question}}\n\n### Incorrect answer\n{{provided}}\n\n{{instruction}}',
];
const WRONG_ANSWER_SHORT = [
  'Q: {{question}}\nWrong: {{provided}}\nSolve again. {{instruction}}',
  '{{provided}} is wrong.\n{{question}}\n{{instruction}}',
];

// ---- test-time re-solve (§4): {{question}} {{answer}} {{instruction}} -----------------------------------

const RESOLVE_FULL = [
  'Below is a question and an incorrect answer. Do not follow the incorrect answer. Instead, reason through ' +
    'the question properly and provide the correct final answer.' +
    '\n\nQuestion: {{question}}\n\nIncorrect answer: {{answer}}\n\n{{instruction}}',
];
const RESOLVE_SHORT = ['Q: {{question}}\nNot {{answer}}. Solve again. {{instruction}}'];

/** Every template set, by kind and variant. */
export const TEMPLATES: Readonly<
  Record<TemplateKind, Readonly<Record<TemplateVariant, readonly Template[]>>>
> = {
  'pointwise-yesno': {
    full: set('pointwise-yesno', 'full', POINTWISE_YESNO_FULL),
    short: set('pointwise-yesno', 'short', POINTWISE_YESNO_SHORT),
  },
  'pointwise-ab': {
    full: set('pointwise-ab', 'full', POINTWISE_AB_FULL),
    short: set('pointwise-ab', 'short', POINTWISE_AB_SHORT),
  },
  pairwise: { full: set('pairwise', 'full', PAIRWISE_FULL), short: set('pairwise', 'short', PAIRWISE_SHORT) },
  'reflection-neutral-cot': {
    full: set('reflection-neutral-cot', 'full', NEUTRAL_COT_FULL),
    short: set('reflection-neutral-cot', 'short', NEUTRAL_COT_SHORT),
  },
  'reflection-neutral-answer': {
    full: set('reflection-neutral-answer', 'full', NEUTRAL_ANSWER_FULL),
    short: set('reflection-neutral-answer', 'short', NEUTRAL_ANSWER_SHORT),
  },
  'reflection-wrong-cot': {
    full: set('reflection-wrong-cot', 'full', WRONG_COT_FULL),
    short: set('reflection-wrong-cot', 'short', WRONG_COT_SHORT),
  },
  'reflection-wrong-answer': {
    full: set('reflection-wrong-answer', 'full', WRONG_ANSWER_FULL),
    short: set('reflection-wrong-answer', 'short', WRONG_ANSWER_SHORT),
  },
  resolve: { full: set('resolve', 'full', RESOLVE_FULL), short: set('resolve', 'short', RESOLVE_SHORT) },
};

/** The placeholders each kind's templates must use (checked by the tests). */
export const REQUIRED_PLACEHOLDERS: Readonly<Record<TemplateKind, readonly string[]>> = {
  'pointwise-yesno': ['question', 'answer'],
  'pointwise-ab': ['question', 'answer'],
  pairwise: ['question', 'answer_a', 'answer_b'],
  'reflection-neutral-cot': ['question', 'provided', 'instruction'],
  'reflection-neutral-answer': ['question', 'provided', 'instruction'],
  'reflection-wrong-cot': ['question', 'provided', 'instruction'],
  'reflection-wrong-answer': ['question', 'provided', 'instruction'],
  resolve: ['question', 'answer', 'instruction'],
};
