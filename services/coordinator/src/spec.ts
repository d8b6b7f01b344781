// Job spec validation: fills the documented defaults of every zero field (docs/jobs.md), checks every
// range at once and throws one InvalidArgumentError listing EVERY bad field (`<field>: <why>`, field
// names as in the proto JSON, camelCase). The model must be a preset or a checkpoint directory holding a
// config.json; the dataset "builtin" or a readable file; both below the cluster's roots, and the job's
// checkpoint directory below the checkpoint root (paths.ts). Also the fixed optimizer constants and the
// job-id generator.
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';

import { InvalidArgumentError } from '@spark/runtime';
import { CHECKPOINT_FILES, JOB_ID_PATTERN, type AlgorithmName } from '@spark/contract';
import { Algorithm, type JobSpec } from '@spark/protocol';
import { learningRateAt } from '@spark/method/schedule';
import { FAMILIES } from '@spark/method/tasks';

import {
  confinedCheckpointDir,
  confinedCheckpointTarget,
  confinedDatasetFile,
  rootList,
  type JobRoots,
} from './paths.js';

/** How a spec names an uploaded dataset (upload.ts stores it). */
const UPLOADED = /^sha256:[0-9a-f]{64}$/;

/** Where the uploaded dataset with this hash is stored below the dataset root. */
export function uploadedPath(datasetDir: string, sha256: string): string {
  return join(resolve(datasetDir), 'uploads', 'sha256', `${sha256}.jsonl`);
}

/** The model presets the native learner compiles in (kernels/ts/config.ts PresetName). */
export const MODEL_PRESETS = ['tiny', 'small', 'demo'] as const;
export const DATASET_FORMATS = ['auto', 'spark', 'eval', 'gsm8k', 'math', 'jsonl'] as const;

/** Defaults of the zero fields (docs/jobs.md lists the same table). */
export const SPEC_DEFAULTS = Object.freeze({
  name: 'job',
  model: 'tiny',
  dataset: 'builtin',
  algorithm: Algorithm.ALGORITHM_SPARK,
  batchSize: 16,
  groupSize: 8,
  epochs: 1,
  maxSteps: 0,
  learningRate: 1e-4,
  clipEpsilon: 0.2,
  klCoefficient: 0.001,
  temperature: 1.0,
  maxNewTokens: 64,
  warmupSteps: 0,
  seed: 0,
  topP: 1.0,
  lrSchedule: 'cosine',
  lrWarmupRatio: 0.03,
  minLrRatio: 0.1,
  recyclePointwise: true,
  recyclePairwise: true,
  recycleReflection: true,
  evalInterval: 0,
  checkpointInterval: 0,
  rolloutWorkers: 1,
  evalSize: 64,
  miniBatchSize: 64,
  templateVariant: 'short',
  checkpointDir: '',
  warmupBatchSize: 32,
  warmupLearningRate: 1e-3,
  taskMaxDifficulty: 2,
  warmupJudgeFraction: 0.25,
  recycleBalanceLabels: false,
  verifyUnboxed: false,
  warmupLrSchedule: 'constant',
  datasetFormat: 'auto',
  trainSize: 2048,
  microBatchSize: 16,
});

/** Optimizer constants every update uses (docs/method.md "One step" defaults). */
export const OPTIMIZER = Object.freeze({ maxGradNorm: 1.0, beta1: 0.9, beta2: 0.95, weightDecay: 0 });

export const MAX_NAME_CHARS = 128;
export const MAX_PATH_CHARS = 4096;

/** The algorithm's contract name. */
export function algorithmName(a: Algorithm): AlgorithmName {
  if (a === Algorithm.ALGORITHM_GRPO) return 'grpo';
  if (a === Algorithm.ALGORITHM_GRPO_JUDGE) return 'grpo-judge';
  return 'spark';
}

function isPreset(model: string): boolean {
  return (MODEL_PRESETS as readonly string[]).includes(model);
}

/**
 * The spec with defaults filled; throws InvalidArgumentError listing every bad field. Paths (a checkpoint
 * model, a dataset file, the checkpoint directory) are confined to `options`' roots and made absolute
 * (real paths for what is read); relative ones are taken below the dataset root (dataset) or the checkpoint
 * root (model, checkpointDir).
 */
export function normalizeSpec(input: JobSpec | undefined, options: JobRoots & { jobId: string }): JobSpec {
  if (!input) throw new InvalidArgumentError('invalid job spec', ['spec: required']);
  const problems: string[] = [];
  const roots = rootList(options).join(', ');
  const d = SPEC_DEFAULTS;
  const num = (v: number, def: number) => (v === 0 ? def : v);
  const str = (v: string, def: string) => (v === '' ? def : v);

  const spec: JobSpec = {
    name: str(input.name.trim(), d.name),
    model: str(input.model.trim(), d.model),
    dataset: str(input.dataset.trim(), d.dataset),
    algorithm: input.algorithm === Algorithm.ALGORITHM_UNSPECIFIED ? d.algorithm : input.algorithm,
    batchSize: num(input.batchSize, d.batchSize),
    groupSize: num(input.groupSize, d.groupSize),
    epochs: num(input.epochs, d.epochs),
    maxSteps: input.maxSteps,
    learningRate: num(input.learningRate, d.learningRate),
    clipEpsilon: num(input.clipEpsilon, d.clipEpsilon),
    klCoefficient: num(input.klCoefficient, d.klCoefficient),
    temperature: num(input.temperature, d.temperature),
    maxNewTokens: num(input.maxNewTokens, d.maxNewTokens),
    warmupSteps: input.warmupSteps,
    seed: input.seed,
    topP: num(input.topP, d.topP),
    lrSchedule: str(input.lrSchedule.trim(), d.lrSchedule),
    lrWarmupRatio: num(input.lrWarmupRatio, d.lrWarmupRatio),
    minLrRatio: num(input.minLrRatio, d.minLrRatio),
    recyclePointwise: input.recyclePointwise ?? d.recyclePointwise,
    recyclePairwise: input.recyclePairwise ?? d.recyclePairwise,
    recycleReflection: input.recycleReflection ?? d.recycleReflection,
    evalInterval: input.evalInterval,
    checkpointInterval: input.checkpointInterval,
    rolloutWorkers: num(input.rolloutWorkers, d.rolloutWorkers),
    evalSize: num(input.evalSize, d.evalSize),
    miniBatchSize: num(input.miniBatchSize, d.miniBatchSize),
    templateVariant: str(input.templateVariant.trim(), d.templateVariant),
    checkpointDir: str(input.checkpointDir.trim(), join(options.dataDir, options.jobId)),
    warmupBatchSize: num(input.warmupBatchSize, d.warmupBatchSize),
    warmupLearningRate: num(input.warmupLearningRate, d.warmupLearningRate),
    datasetFormat: str(input.datasetFormat.trim(), d.datasetFormat),
    trainSize: num(input.trainSize, d.trainSize),
    microBatchSize: 0,
    taskFamilies: input.taskFamilies.map((f) => f.trim()),
    taskMaxDifficulty: num(input.taskMaxDifficulty, d.taskMaxDifficulty),
    warmupJudgeFraction: input.warmupJudgeFraction ?? d.warmupJudgeFraction,
    recycleBalanceLabels: input.recycleBalanceLabels ?? d.recycleBalanceLabels,
    verifyUnboxed: input.verifyUnboxed ?? d.verifyUnboxed,
    warmupLrSchedule: str(input.warmupLrSchedule.trim(), d.warmupLrSchedule),
  };
  spec.microBatchSize = input.microBatchSize || Math.min(d.microBatchSize, spec.miniBatchSize);

  const int = (field: keyof JobSpec, v: number, lo: number, hi: number) => {
    if (!Number.isInteger(v) || v < lo || v > hi)
      problems.push(`${field}: must be an integer in [${lo}, ${hi}], got ${v}`);
  };
  const real = (field: keyof JobSpec, v: number, lo: number, hi: number, loOpen: boolean, hiOpen = false) => {
    const okLo = loOpen ? v > lo : v >= lo;
    const okHi = hiOpen ? v < hi : v <= hi;
    if (!Number.isFinite(v) || !okLo || !okHi)
      problems.push(`${field}: must be in ${loOpen ? '(' : '['}${lo}, ${hi}${hiOpen ? ')' : ']'}, got ${v}`);
  };

  if (spec.name.length > MAX_NAME_CHARS)
    problems.push(`name: at most ${MAX_NAME_CHARS} characters, got ${spec.name.length}`);
  if ([...spec.name].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) === 0x7f))
    problems.push('name: must not contain control characters');
  if (spec.model.length > MAX_PATH_CHARS) problems.push(`model: at most ${MAX_PATH_CHARS} characters`);
  else if (!isPreset(spec.model)) {
    const dir = confinedCheckpointDir(spec.model, options, CHECKPOINT_FILES.config);
    if (dir === null)
      problems.push(
        `model: "${spec.model.slice(0, 200)}" is neither a model preset (${MODEL_PRESETS.join(', ')}) nor a checkpoint directory with a readable ${CHECKPOINT_FILES.config} below the allowed roots (${roots})`,
      );
    else spec.model = dir;
  }
  if (spec.dataset.length > MAX_PATH_CHARS) problems.push(`dataset: at most ${MAX_PATH_CHARS} characters`);
  else if (UPLOADED.test(spec.dataset)) {
    const file = confinedDatasetFile(uploadedPath(options.datasetDir, spec.dataset.slice(7)), options);
    if (file === null)
      problems.push(
        `dataset: no uploaded dataset ${spec.dataset} on this cluster (\`spark submit\` uploads it)`,
      );
    else spec.dataset = file;
  } else if (spec.dataset !== 'builtin') {
    const file = confinedDatasetFile(spec.dataset, options);
    if (file === null)
      problems.push(
        `dataset: "${spec.dataset.slice(0, 200)}" is neither "builtin" nor a readable file below the allowed roots (${roots}); upload a local file with \`spark submit\``,
      );
    else spec.dataset = file;
  }
  if (
    spec.algorithm !== Algorithm.ALGORITHM_SPARK &&
    spec.algorithm !== Algorithm.ALGORITHM_GRPO &&
    spec.algorithm !== Algorithm.ALGORITHM_GRPO_JUDGE
  )
    problems.push(
      `algorithm: must be ALGORITHM_SPARK, ALGORITHM_GRPO or ALGORITHM_GRPO_JUDGE, got ${input.algorithm}`,
    );
  int('batchSize', spec.batchSize, 1, 4096);
  int('groupSize', spec.groupSize, 2, 256);
  int('epochs', spec.epochs, 1, 10_000);
  int('maxSteps', spec.maxSteps, 0, 10_000_000);
  real('learningRate', spec.learningRate, 0, 1, true);
  real('clipEpsilon', spec.clipEpsilon, 0, 1, true, true);
  real('klCoefficient', spec.klCoefficient, 0, 100, false);
  real('temperature', spec.temperature, 0, 10, true);
  int('maxNewTokens', spec.maxNewTokens, 1, 8192);
  int('warmupSteps', spec.warmupSteps, 0, 1_000_000);
  if (!Number.isSafeInteger(spec.seed) || spec.seed < 0)
    problems.push(`seed: must be a non-negative safe integer, got ${spec.seed}`);
  real('topP', spec.topP, 0, 1, true);
  if (spec.lrSchedule !== 'cosine' && spec.lrSchedule !== 'constant')
    problems.push(`lrSchedule: must be "cosine" or "constant", got "${spec.lrSchedule.slice(0, 64)}"`);
  if (spec.warmupLrSchedule !== 'cosine' && spec.warmupLrSchedule !== 'constant')
    problems.push(
      `warmupLrSchedule: must be "cosine" or "constant", got "${spec.warmupLrSchedule.slice(0, 64)}"`,
    );
  real('lrWarmupRatio', spec.lrWarmupRatio, 0, 1, false, true);
  real('minLrRatio', spec.minLrRatio, 0, 1, false);
  int('evalInterval', spec.evalInterval, 0, 10_000_000);
  int('checkpointInterval', spec.checkpointInterval, 0, 10_000_000);
  int('rolloutWorkers', spec.rolloutWorkers, 1, 1024);
  int('evalSize', spec.evalSize, 1, 10_000);
  int('miniBatchSize', spec.miniBatchSize, 1, 65_536);
  int('microBatchSize', spec.microBatchSize, 1, 65_536);
  if (spec.microBatchSize > spec.miniBatchSize)
    problems.push(
      `microBatchSize: must not exceed miniBatchSize (${spec.miniBatchSize}), got ${spec.microBatchSize}`,
    );
  if (spec.templateVariant !== 'short' && spec.templateVariant !== 'full')
    problems.push(`templateVariant: must be "short" or "full", got "${spec.templateVariant.slice(0, 64)}"`);
  if (spec.checkpointDir.length > MAX_PATH_CHARS)
    problems.push(`checkpointDir: at most ${MAX_PATH_CHARS} characters`);
  else {
    const target = confinedCheckpointTarget(spec.checkpointDir, options);
    if (target === null)
      problems.push(
        `checkpointDir: "${spec.checkpointDir.slice(0, 200)}" is not a directory below the checkpoint root (${rootList(options)[1]})`,
      );
    else spec.checkpointDir = target;
  }
  int('warmupBatchSize', spec.warmupBatchSize, 1, 4096);
  real('warmupLearningRate', spec.warmupLearningRate, 0, 1, true);
  int('taskMaxDifficulty', spec.taskMaxDifficulty, 1, 3);
  real('warmupJudgeFraction', spec.warmupJudgeFraction ?? 0, 0, 1, false, true);
  if (spec.taskFamilies.length > FAMILIES.length)
    problems.push(`taskFamilies: at most ${FAMILIES.length} families, got ${spec.taskFamilies.length}`);
  for (const f of spec.taskFamilies.slice(0, FAMILIES.length)) {
    if (!(FAMILIES as readonly string[]).includes(f))
      problems.push(
        `taskFamilies: unknown family ${JSON.stringify(f.slice(0, 40))} (known: ${FAMILIES.join(', ')})`,
      );
  }
  if (!(DATASET_FORMATS as readonly string[]).includes(spec.datasetFormat))
    problems.push(
      `datasetFormat: must be one of ${DATASET_FORMATS.join(', ')}, got "${spec.datasetFormat.slice(0, 64)}"`,
    );
  int('trainSize', spec.trainSize, 1, 1_000_000);
  if (spec.dataset === 'builtin' && Number.isInteger(spec.trainSize) && spec.trainSize < spec.batchSize)
    problems.push(
      `trainSize: must be at least batchSize (${spec.batchSize}) for the built-in dataset, got ${spec.trainSize}`,
    );
  if (spec.algorithm === Algorithm.ALGORITHM_GRPO_JUDGE && !spec.recyclePointwise && !spec.recyclePairwise)
    problems.push(
      'recyclePointwise: grpo-judge trains on judge items only, so pointwise or pairwise recycling must be on',
    );

  if (problems.length) throw new InvalidArgumentError('invalid job spec', problems);
  return spec;
}

/** A fresh job id matching JOB_ID_PATTERN: a slug of the name, the time and randomness. */
export function newJobId(name: string, now = Date.now()): string {
  const slug =
    name
      .toLowerCase()
      .replace(/[^a-z0-9]+/g, '-')
      .replace(/^-+|-+$/g, '')
      .slice(0, 24)
      .replace(/-+$/, '') || 'job';
  const id = `${slug}-${now.toString(36)}-${randomBytes(3).toString('hex')}`;
  if (!JOB_ID_PATTERN.test(id)) throw new Error(`generated job id ${id} does not match the pattern`);
  return id;
}

/**
 * The learning rate of supervised warm-up step `step` (0-based) of the spec's `warmupSteps` W: constant, or a
 * cosine from `warmupLearningRate` at step 0 towards `minLrRatio` of it at step W (the last step, W − 1, is
 * just above that floor).
 */
export function warmupLearningRate(
  spec: Pick<JobSpec, 'warmupLearningRate' | 'warmupLrSchedule' | 'warmupSteps' | 'minLrRatio'>,
  step: number,
): number {
  const peak = spec.warmupLearningRate;
  if (spec.warmupLrSchedule !== 'cosine') return peak;
  return learningRateAt(
    { kind: 'cosine', warmupRatio: 0, minLrRatio: spec.minLrRatio },
    peak,
    step,
    spec.warmupSteps,
  );
}
