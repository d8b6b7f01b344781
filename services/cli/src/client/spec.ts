// Job spec files for `spark submit`: YAML or JSON mappings whose keys are the JobSpec proto JSON names
// (lowerCamelCase, e.g. `batchSize`; the proto's snake_case names are accepted too). This module checks
// what can be checked without the cluster — unknown keys, wrong types, negative counts — and reports every
// problem at once (SpecFileError); range and consistency rules are the coordinator's (SubmitJob).
import { readFileSync, statSync } from 'node:fs';

import { parse as parseYaml } from 'yaml';

import { Algorithm, JobSpec } from '@spark/protocol';

/** A spec file that cannot be submitted; `problems` lists every reason. */
export class SpecFileError extends Error {
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super(`${file}: invalid job spec:\n  - ${problems.join('\n  - ')}`);
    this.name = 'SpecFileError';
  }
}

type FieldType = 'string' | 'uint' | 'double' | 'bool' | 'algorithm';

/**
 * JobSpec fields by JSON name with their type (mirrors proto/spark/v1/job.proto). A field added to the
 * proto later and missing here is still accepted: `fieldType` infers text / number / switch from the
 * generated defaults, and the coordinator checks its range.
 */
export const SPEC_FIELDS: Readonly<Partial<Record<keyof JobSpec, FieldType>>> = {
  name: 'string',
  model: 'string',
  dataset: 'string',
  algorithm: 'algorithm',
  batchSize: 'uint',
  groupSize: 'uint',
  epochs: 'uint',
  maxSteps: 'uint',
  learningRate: 'double',
  clipEpsilon: 'double',
  klCoefficient: 'double',
  temperature: 'double',
  maxNewTokens: 'uint',
  warmupSteps: 'uint',
  seed: 'uint',
  topP: 'double',
  lrSchedule: 'string',
  lrWarmupRatio: 'double',
  minLrRatio: 'double',
  recyclePointwise: 'bool',
  recyclePairwise: 'bool',
  recycleReflection: 'bool',
  evalInterval: 'uint',
  checkpointInterval: 'uint',
  rolloutWorkers: 'uint',
  evalSize: 'uint',
  miniBatchSize: 'uint',
  templateVariant: 'string',
  checkpointDir: 'string',
  warmupBatchSize: 'uint',
  warmupLearningRate: 'double',
  datasetFormat: 'string',
};

/** The short algorithm names a spec may use, and the proto enum names. */
const ALGORITHMS: Readonly<Record<string, Algorithm>> = {
  spark: Algorithm.ALGORITHM_SPARK,
  grpo: Algorithm.ALGORITHM_GRPO,
  'grpo-judge': Algorithm.ALGORITHM_GRPO_JUDGE,
  ALGORITHM_SPARK: Algorithm.ALGORITHM_SPARK,
  ALGORITHM_GRPO: Algorithm.ALGORITHM_GRPO,
  ALGORITHM_GRPO_JUDGE: Algorithm.ALGORITHM_GRPO_JUDGE,
};

const DEFAULTS = JobSpec.fromPartial({}) as unknown as Record<string, unknown>;

/** Every field name of the generated JobSpec (optional switches included). */
export function specFieldNames(): string[] {
  const names = new Set([...Object.keys(DEFAULTS), ...Object.keys(SPEC_FIELDS)]);
  return [...names];
}

function fieldType(name: string): FieldType | undefined {
  const known = (SPEC_FIELDS as Record<string, FieldType | undefined>)[name];
  if (known) return known;
  if (!(name in DEFAULTS)) return undefined;
  const d = DEFAULTS[name];
  if (d === undefined) return /^recycle[A-Z]/.test(name) ? 'bool' : undefined;
  return typeof d === 'string'
    ? 'string'
    : typeof d === 'number'
      ? 'double'
      : typeof d === 'boolean'
        ? 'bool'
        : undefined;
}

const MAX_SPEC_BYTES = 256 * 1024;
const MAX_STRING_CHARS = 4096;

function camelOf(key: string): string {
  return key.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v === 'object' ? 'a mapping' : typeof v;
}

/** Checks a parsed spec mapping and builds the JobSpec; throws SpecFileError listing every problem. */
export function specFromObject(raw: unknown, file = 'job spec'): JobSpec {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw))
    throw new SpecFileError(file, [`the top level must be a mapping of spec fields, got ${typeName(raw)}`]);
  const problems: string[] = [];
  const unknown: string[] = [];
  const out: Partial<Record<keyof JobSpec, unknown>> = {};
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    const name = camelOf(key) as keyof JobSpec;
    const type = fieldType(name);
    if (!type) {
      unknown.push(key);
      continue;
    }
    if (name in out) {
      problems.push(`${key}: given twice (as ${name} and in snake_case)`);
      continue;
    }
    if (value === null || value === undefined) continue; // explicit null = take the default
    switch (type) {
      case 'string':
        if (typeof value !== 'string') problems.push(`${key}: expected text, got ${typeName(value)}`);
        else if (value.length > MAX_STRING_CHARS)
          problems.push(`${key}: longer than ${MAX_STRING_CHARS} characters`);
        else out[name] = value;
        break;
      case 'uint':
        if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 2 ** 32 - 1)
          problems.push(`${key}: expected a whole number ≥ 0, got ${JSON.stringify(value)}`);
        else out[name] = value;
        break;
      case 'double':
        if (typeof value !== 'number' || !Number.isFinite(value))
          problems.push(`${key}: expected a number, got ${JSON.stringify(value)}`);
        else out[name] = value;
        break;
      case 'bool':
        if (typeof value !== 'boolean')
          problems.push(`${key}: expected true or false, got ${JSON.stringify(value)}`);
        else out[name] = value;
        break;
      case 'algorithm': {
        const alg = typeof value === 'string' ? ALGORITHMS[value] : undefined;
        if (alg === undefined)
          problems.push(`${key}: expected one of spark, grpo, grpo-judge, got ${JSON.stringify(value)}`);
        else out[name] = alg;
        break;
      }
    }
  }
  if (unknown.length)
    problems.unshift(
      `unknown key${unknown.length > 1 ? 's' : ''}: ${unknown.join(', ')} (known: ${specFieldNames().join(', ')})`,
    );
  if (problems.length) throw new SpecFileError(file, problems);
  return JobSpec.fromPartial(out as Partial<JobSpec>);
}

/** Parses spec text (YAML, which includes JSON). */
export function parseSpecText(text: string, file = 'job spec'): JobSpec {
  if (text.length > MAX_SPEC_BYTES) throw new SpecFileError(file, [`larger than ${MAX_SPEC_BYTES} bytes`]);
  let raw: unknown;
  try {
    raw = parseYaml(text, { maxAliasCount: 16 });
  } catch (err) {
    throw new SpecFileError(file, [
      `not valid YAML/JSON: ${err instanceof Error ? err.message : String(err)}`,
    ]);
  }
  return specFromObject(raw, file);
}

/** Reads and parses a spec file. */
export function readSpecFile(path: string): JobSpec {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new SpecFileError(path, ['file not found or unreadable']);
  }
  if (size > MAX_SPEC_BYTES) throw new SpecFileError(path, [`larger than ${MAX_SPEC_BYTES} bytes`]);
  return parseSpecText(readFileSync(path, 'utf8'), path);
}
