// Option parsing shared by `spark eval`, `spark infer` and `spark score`: integer and choice checks that
// fail with an EvalOptionError (printed as `spark: <message>`, exit 1) instead of a crash.
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
