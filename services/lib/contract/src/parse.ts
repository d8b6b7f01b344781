// The parse helpers behind every payload's parse function: a zod schema check whose InvalidArgumentError
// lists every bad field path, and JSON.parse with a named error.
import { InvalidArgumentError } from '@spark/runtime';
import type { z } from 'zod';

/** Throws InvalidArgumentError "invalid <what>: <path>: <problem>; …" (every bad path, at most 100 listed). */
export function parseWith<S extends z.ZodType>(schema: S, what: string, data: unknown): z.output<S> {
  const r = schema.safeParse(data);
  if (r.success) return r.data;
  throw new InvalidArgumentError(`invalid ${what}`, describeIssues(r.error.issues));
}

/**
 * "path.to.field: message" per issue, bounded (100 listed, then a count of the rest). A value matching no
 * member of a union is described by the member it came closest to (fewest issues), so the path names the
 * bad field rather than the union.
 */
export function describeIssues(issues: readonly z.core.$ZodIssue[], max = 100): string[] {
  const flat = issues.flatMap((i) => flatten(i, []));
  const out = flat.slice(0, max).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  if (flat.length > max) out.push(`… and ${flat.length - max} more`);
  return out;
}

function flatten(
  issue: z.core.$ZodIssue,
  prefix: readonly PropertyKey[],
): { path: string[]; message: string }[] {
  const path = [...prefix, ...issue.path];
  if (issue.code === 'invalid_union' && issue.errors.length) {
    const closest = issue.errors.reduce((a, b) => (b.length < a.length ? b : a));
    if (closest.length) return closest.flatMap((i) => flatten(i, path));
  }
  return [{ path: path.map(String), message: issue.message }];
}

/** JSON.parse that throws InvalidArgumentError naming `what` (for text read from Redis or a queue). */
export function parseJson(text: string, what: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidArgumentError(
      `${what} is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
}
