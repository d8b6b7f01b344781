// The checkpoint folder layout, the one place that names it. The learner writes it
// (services/learner/src/checkpoint.ts); the method's checkpoint reader, the rollout workers' evaluation
// generators, the coordinator's spec check and the CLI read it:
//
//   <root>/latest.json                   LatestPointer: {"dir": "step-<n>" | "warmup", "step": n}
//   <root>/step-<n>/ (or warmup/)        one checkpoint:
//     config.json                        Hugging Face style model config (Model.save)
//     model.safetensors                  weights (or model.safetensors.index.json + shards, read by kernels)
//     optimizer.safetensors              AdamW moments and step (Model.save with the optimizer)
//     reference.safetensors              the frozen GRPO reference, once RL started
//     trainer_state.json                 TrainerState: job, step, versions, lr-schedule position, task mix
//     tokenizer.json (+ tokenizer_config.json)  a Hugging Face tokenizer, when the checkpoint carries one
//     manifest.json                      CheckpointManifest: size and SHA-256 of every other file, written
//                                        last; a directory is complete when it verifies against it
//
// A checkpoint directory is built under a hidden temporary name (`.tmp-…`, never read) and renamed into
// place once complete and synced. `latest.json` names the newest checkpoint (`step-<n>` or `warmup`); a
// restarted learner resumes the job from it, or from the newest other one that verifies when it does not. @spark/kernels reads config.json and the
// weights with its own names (checkpointFiles); they are the same files.
import { z } from 'zod';
import { LearnResultSchema } from './types.js';

import { parseWith } from './parse.js';

/** File names inside one checkpoint directory, and the root's latest pointer. */
export const CHECKPOINT_FILES = Object.freeze({
  config: 'config.json',
  weights: 'model.safetensors',
  weightsIndex: 'model.safetensors.index.json',
  optimizer: 'optimizer.safetensors',
  reference: 'reference.safetensors',
  trainerState: 'trainer_state.json',
  tokenizer: 'tokenizer.json',
  tokenizerConfig: 'tokenizer_config.json',
  manifest: 'manifest.json',
  /** In the checkpoint root, not in a checkpoint directory. */
  latest: 'latest.json',
});

/** The checkpoint written at the end of warm-up (the base model before RL). */
export const WARMUP_CHECKPOINT = 'warmup';

/** Any checkpoint directory name the learner writes (`step-<n>`, `warmup`). */
export const CHECKPOINT_NAME_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** A periodic checkpoint's directory name: `step-<n>`. */
export const STEP_DIR_PATTERN = /^step-(\d+)$/;

/** The directory name of the checkpoint after step `step`. */
export function stepDirName(step: number): string {
  return `step-${step}`;
}

/** The step of a `step-<n>` directory name; null for any other name (e.g. `warmup`). */
export function stepOfDirName(name: string): number | null {
  const m = STEP_DIR_PATTERN.exec(name);
  return m ? Number(m[1]) : null;
}

/** Largest latest.json / trainer_state.json / manifest.json a reader accepts. */
export const MAX_LATEST_POINTER_BYTES = 4_096;
export const MAX_TRAINER_STATE_BYTES = 1 << 20;
export const MAX_MANIFEST_BYTES = 1 << 20;

/** `<dir>/manifest.json`: every other file of a checkpoint directory with its size and SHA-256 (hex). */
export const CheckpointManifestSchema = z.object({
  format: z.literal(1),
  files: z
    .array(
      z.object({
        name: z
          .string()
          .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/, 'must be a plain file name')
          .refine((n) => n !== 'manifest.json', 'the manifest does not list itself'),
        bytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
        sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be 64 lowercase hex digits'),
      }),
    )
    .min(1)
    .max(1024),
});
export type CheckpointManifest = Readonly<z.infer<typeof CheckpointManifestSchema>>;
export const parseCheckpointManifest = (data: unknown): CheckpointManifest =>
  parseWith(CheckpointManifestSchema, 'manifest.json', data);

/** `<root>/latest.json`: the newest checkpoint directory (relative to the root) and its step. */
export const LatestPointerSchema = z.object({
  dir: z.string().regex(CHECKPOINT_NAME_PATTERN, 'must be a checkpoint directory name'),
  step: z.number().int().min(0).max(1e9),
});
export type LatestPointer = Readonly<z.infer<typeof LatestPointerSchema>>;
export const parseLatestPointer = (data: unknown): LatestPointer =>
  parseWith(LatestPointerSchema, 'latest.json', data);

/** The learning-rate schedule stored with a checkpoint (the learner's LrSchedule). */
export const LrScheduleSchema = z.object({
  kind: z.enum(['cosine', 'constant']),
  warmupRatio: z.number().min(0).max(1),
  minLrRatio: z.number().min(0).max(1),
});

const count = () => z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/**
 * The task mix a checkpoint was trained on (the job spec's dataset and, for the built-in tasks, its
 * resolved families and difficulty levels); `spark eval` evaluates on it by default.
 */
export const TaskMixSchema = z.object({
  /** `builtin`, or the training file (families and difficulties are then empty). */
  dataset: z.string().min(1).max(4096),
  families: z.array(z.string().regex(/^[a-z][a-z0-9_-]{0,63}$/)).max(64),
  difficulties: z.array(z.number().int().min(1).max(100)).max(100),
});
export type TaskMix = Readonly<z.infer<typeof TaskMixSchema>>;

/** `trainer_state.json`: what a restarted learner resumes from (and what a reader reports). */
export const TrainerStateSchema = z.object({
  jobId: z.string().min(1).max(256),
  step: count(),
  /** The phase of the task that wrote it: warmup, policy, reward or checkpoint. */
  phase: z.string().max(64),
  policyVersion: count(),
  optimizerSteps: count(),
  rlOptimizerSteps: count(),
  totalOptimizerSteps: count().nullable(),
  schedule: LrScheduleSchema,
  learningRate: z.number().nullable(),
  /** ISO time of writing. */
  savedAt: z.string().max(64),
  /** The task mix of the job (absent in checkpoints written before it was recorded). */
  taskMix: TaskMixSchema.optional(),
  /**
   * The result of the training task (`step`, `phase`) whose update this checkpoint holds, as the learner
   * reported it (without `checkpointPath`; `seconds.train` and `seconds.publish` are 0: not known yet). A
   * learner restarted from this checkpoint answers a redelivery of that task with it instead of refusing it
   * as stale (the update is already in the weights). Absent for `checkpoint` tasks and in checkpoints
   * written before it was recorded.
   */
  result: LearnResultSchema.omit({ checkpointPath: true }).optional(),
});
export type TrainerState = Readonly<z.infer<typeof TrainerStateSchema>> & {
  readonly schedule: Readonly<z.infer<typeof LrScheduleSchema>>;
};
export const parseTrainerState = (data: unknown): TrainerState =>
  parseWith(TrainerStateSchema, 'trainer_state.json', data);
