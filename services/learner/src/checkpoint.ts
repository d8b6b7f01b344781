// Learner checkpoints: `<dir>/step-<n>/` holds config.json + model.safetensors (Hugging Face names, so
// `Model.load` and transformers read it), optimizer.safetensors (AdamW moments and step),
// reference.safetensors (the frozen GRPO reference, once RL started) and trainer_state.json (job id, step,
// policy version, optimizer-step counters = the lr-schedule position). `<dir>/latest.json` names the newest
// one; a restarted learner resumes a job from it. Every file is written to a temporary name and renamed.
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { InvalidArgumentError } from '@spark/runtime';
import { Model } from '@spark/kernels';

import type { LrSchedule } from './schedule.js';

export const TRAINER_STATE_FILE = 'trainer_state.json';
export const REFERENCE_FILE = 'reference.safetensors';
export const LATEST_FILE = 'latest.json';

export interface TrainerState {
  readonly jobId: string;
  readonly step: number;
  readonly phase: string;
  readonly policyVersion: number;
  readonly optimizerSteps: number;
  readonly rlOptimizerSteps: number;
  readonly totalOptimizerSteps: number | null;
  readonly schedule: LrSchedule;
  readonly learningRate: number | null;
  readonly savedAt: string;
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeFile(tmp, text);
  await rename(tmp, path);
}

/**
 * Writes one checkpoint directory (`step-<n>`, or `name` when given: the end of warm-up is `warmup`) and
 * points latest.json at it; returns the directory.
 */
export async function writeCheckpoint(
  root: string,
  model: Model,
  reference: Model | null,
  state: TrainerState,
  name = `step-${state.step}`,
): Promise<string> {
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) throw new InvalidArgumentError(`bad checkpoint name "${name}"`);
  const dir = join(root, name);
  await model.save(dir, { optimizer: true });
  if (reference) await reference.saveWeights(join(dir, REFERENCE_FILE));
  await writeAtomic(join(dir, TRAINER_STATE_FILE), JSON.stringify(state, null, 2) + '\n');
  await writeAtomic(join(root, LATEST_FILE), JSON.stringify({ dir: name, step: state.step }) + '\n');
  return dir;
}

/** Reads and checks a trainer_state.json. */
export async function readTrainerState(dir: string): Promise<TrainerState> {
  const path = join(dir, TRAINER_STATE_FILE);
  const info = await stat(path);
  if (info.size > 1 << 20) throw new InvalidArgumentError(`${path} is larger than 1 MiB`);
  const s = JSON.parse(await readFile(path, 'utf8')) as Partial<TrainerState>;
  const problems: string[] = [];
  if (typeof s.jobId !== 'string') problems.push('jobId');
  for (const k of ['step', 'policyVersion', 'optimizerSteps', 'rlOptimizerSteps'] as const) {
    if (!Number.isInteger(s[k]) || (s[k] as number) < 0) problems.push(k);
  }
  if (problems.length) throw new InvalidArgumentError(`${path}: bad fields`, problems);
  return s as TrainerState;
}

/** The newest checkpoint the job itself wrote under `root`, or null (none, or another job's). */
export async function latestCheckpoint(
  root: string,
  jobId: string,
): Promise<{ dir: string; state: TrainerState } | null> {
  let pointer: { dir?: unknown };
  try {
    pointer = JSON.parse(await readFile(join(root, LATEST_FILE), 'utf8')) as { dir?: unknown };
  } catch {
    return null;
  }
  if (typeof pointer.dir !== 'string' || !/^step-\d+$/.test(pointer.dir)) return null;
  const dir = join(root, pointer.dir);
  const state = await readTrainerState(dir);
  return state.jobId === jobId ? { dir, state } : null;
}

/** The frozen reference stored with a checkpoint, or null when RL had not started. */
export async function loadReference(dir: string, like: Model): Promise<Model | null> {
  const path = join(dir, REFERENCE_FILE);
  try {
    await stat(path);
  } catch {
    return null;
  }
  const scratch = await Model.create(like.config, 0);
  try {
    await scratch.loadWeights([path]);
    return await scratch.cloneFrozen();
  } finally {
    scratch.free();
  }
}
