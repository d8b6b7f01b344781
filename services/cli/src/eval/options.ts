// Option parsing shared by `spark eval`, `spark infer` and `spark score`: integer and choice checks that
// fail with a CommanderError (exit 1, a clear message) instead of a crash.
import { CommanderError } from 'commander';

import type { TemplateVariant } from '@spark/common/templates';

/** A positive integer option within [1, max]. */
export function intOption(command: string, name: string, value: string, max = 1_000_000): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > max)
    throw new CommanderError(
      1,
      `spark.${command}.option`,
      `${command}: --${name} must be an integer in [1, ${max}], got ${value}`,
    );
  return n;
}

/** A non-negative integer option. */
export function seedOption(command: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff)
    throw new CommanderError(
      1,
      `spark.${command}.option`,
      `${command}: --seed must be an integer in [0, 2^32), got ${value}`,
    );
  return n;
}

export function variantOption(value: string): TemplateVariant {
  return value === 'full' ? 'full' : 'short';
}
