// Option parsing shared by `spark eval`, `spark infer` and `spark score`: integer and choice checks that
// fail with an EvalOptionError (printed as `spark: <message>`, exit 1) instead of a crash.
import { DIFFICULTIES, FAMILIES, type Difficulty, type Family } from '@spark/method/tasks';
import type { TemplateVariant } from '@spark/method/templates';

/** A bad option value of an evaluation command. */
export class EvalOptionError extends Error {
  override readonly name = 'EvalOptionError';
}

/** A positive integer option within [1, max]. */
export function intOption(command: string, name: string, value: string, max = 1_000_000): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new EvalOptionError(`${command}: --${name} must be an integer in [1, ${max}], got ${value}`);
  return n;
}

/** A non-negative integer option. */
export function seedOption(command: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    throw new EvalOptionError(`${command}: --seed must be an integer in [0, 2^32), got ${value}`);
  return n;
}

export function variantOption(value: string): TemplateVariant {
  return value === 'full' ? 'full' : 'short';
}

/** A comma-separated list of task families (`add,sub`), each one of FAMILIES, no repeats. */
export function familiesOption(command: string, value: string): Family[] {
  const names = value.split(',').map((x) => x.trim());
  const bad = names.filter((n) => !(FAMILIES as readonly string[]).includes(n));
  if (names.length === 0 || bad.length > 0 || new Set(names).size !== names.length)
    throw new EvalOptionError(
      `${command}: --families must be a comma-separated list of distinct families (${FAMILIES.join(', ')}), got ${value}`,
    );
  return names as Family[];
}

/** A comma-separated list of difficulty levels (`1,2`), each one of DIFFICULTIES, no repeats. */
export function difficultiesOption(command: string, value: string): Difficulty[] {
  const levels = value.split(',').map((x) => Number(x.trim()));
  const bad = levels.filter((n) => !(DIFFICULTIES as readonly number[]).includes(n));
  if (levels.length === 0 || bad.length > 0 || new Set(levels).size !== levels.length)
    throw new EvalOptionError(
      `${command}: --difficulties must be a comma-separated list of distinct levels (${DIFFICULTIES.join(', ')}), got ${value}`,
    );
  return levels as Difficulty[];
}
