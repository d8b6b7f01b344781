// Problem prompts and supervised warm-up pairs for generated tasks: the question followed by the
// answer-format instruction (docs/method.md "Test-time self-reflection"; `short` variant for character-level models), and the
// worked solution as the target completion.
import { problemPrompt, type TemplateVariant } from '../templates/index.js';
import type { TaskProblem } from './dataset.js';

/** The prompt of a generated problem (question + newline + answer-format instruction). */
export function taskPrompt(p: Pick<TaskProblem, 'question'>, variant: TemplateVariant = 'short'): string {
  return problemPrompt(p.question, variant);
}

/** A supervised warm-up pair: the prompt and the worked solution that ends in `\boxed{answer}`. */
export interface WarmupExample {
  readonly id: string;
  readonly prompt: string;
  readonly completion: string;
  readonly answer: string;
}

/** The warm-up pair of a generated problem. */
export function warmupExample(p: TaskProblem, variant: TemplateVariant = 'short'): WarmupExample {
  return { id: p.id, prompt: taskPrompt(p, variant), completion: p.solution, answer: p.answer };
}
