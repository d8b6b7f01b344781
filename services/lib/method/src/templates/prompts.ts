// Prompt builders over the template sets: judge prompts (pointwise and pairwise), reflection prompts, and
// the two test-time self-reflection prompts of docs/method.md "Test-time self-reflection" (self-judge, re-solve). Pure functions;
// the caller picks templates (recycling draws them with a seeded RNG).
import { renderTemplate, type Template, type TemplateVariant } from './render.js';
import { answerInstruction, TEMPLATES } from './sets.js';

/** A pointwise judge prompt (yes/no or a/b template) for one question and one extracted answer. */
export function pointwisePrompt(template: Template, question: string, answer: string): string {
  return renderTemplate(template.text, { question, answer });
}

/** A pairwise judge prompt: answer A and answer B for one question. */
export function pairwisePrompt(
  template: Template,
  question: string,
  answerA: string,
  answerB: string,
): string {
  return renderTemplate(template.text, { question, answer_a: answerA, answer_b: answerB });
}

/** A reflection prompt: the question and the provided (wrong or unverified) CoT or answer. */
export function reflectionPrompt(template: Template, question: string, provided: string): string {
  return renderTemplate(template.text, {
    question,
    provided,
    instruction: answerInstruction(template.variant),
  });
}

/** The template used for self-judging at test time: the FIRST pointwise yes/no template of the variant. */
export function selfJudgeTemplate(variant: TemplateVariant = 'full'): Template {
  return TEMPLATES['pointwise-yesno'][variant][0] as Template;
}

/** §4 step 2a: ask the model whether its own extracted answer is correct (verdict "Yes" stops the loop). */
export function selfJudgePrompt(question: string, answer: string, variant: TemplateVariant = 'full'): string {
  return pointwisePrompt(selfJudgeTemplate(variant), question, answer);
}

/** §4 step 2b: re-solve the question, told that the previous answer is incorrect. */
export function resolvePrompt(
  question: string,
  previousAnswer: string,
  variant: TemplateVariant = 'full',
): string {
  const template = TEMPLATES.resolve[variant][0] as Template;
  return renderTemplate(template.text, {
    question,
    answer: previousAnswer,
    instruction: answerInstruction(variant),
  });
}
