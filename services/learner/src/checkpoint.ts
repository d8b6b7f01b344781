// Learner checkpoints, in the layout of @spark/contract's checkpoint-layout (file names, `step-<n>`
// naming, latest.json and trainer_state.json schemas): `<dir>/step-<n>/` holds config.json +
// model.safetensors (Hugging Face names, so `Model.load` and transformers read it), optimizer.safetensors
// (AdamW moments and step), reference.safetensors (the frozen GRPO reference, once RL started) and
// trainer_state.json (job id, step, policy version, optimizer-step counters = the lr-schedule position).
// `<dir>/latest.json` names the newest one; a restarted learner resumes a job from it. Every file is
// written to a temporary name and renamed.
import { readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { InvalidArgumentError } from '@spark/runtime';
import {
  CHECKPOINT_FILES,
  CHECKPOINT_NAME_PATTERN,
  MAX_LATEST_POINTER_BYTES,
  MAX_TRAINER_STATE_BYTES,
  parseJson,
  parseLatestPointer,
  parseTrainerState,
  stepDirName,
  stepOfDirName,
  type LatestPointer,
  type TrainerState,
} from '@spark/contract';
import { Model } from '@spark/kernels';

export type { TrainerState } from '@spark/contract';
export const TRAINER_STATE_FILE = CHECKPOINT_FILES.trainerState;
export const REFERENCE_FILE = CHECKPOINT_FILES.reference;
export const LATEST_FILE = CHECKPOINT_FILES.latest;

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
  name = stepDirName(state.step),
): Promise<string> {
  if (!CHECKPOINT_NAME_PATTERN.test(name)) throw new InvalidArgumentError(`bad checkpoint name "${name}"`);
  const dir = join(root, name);
  await model.save(dir, { optimizer: true });
  if (reference) await reference.saveWeights(join(dir, REFERENCE_FILE));
  await writeAtomic(join(dir, TRAINER_STATE_FILE), JSON.stringify(state, null, 2) + '\n');
  const pointer: LatestPointer = { dir: name, step: state.step };
  await writeAtomic(join(root, LATEST_FILE), JSON.stringify(pointer) + '\n');
  return dir;
}

/** Reads and checks a trainer_state.json (the contract's schema). */
export async function readTrainerState(dir: string): Promise<TrainerState> {
  const path = join(dir, TRAINER_STATE_FILE);
  const info = await stat(path);
  if (info.size > MAX_TRAINER_STATE_BYTES) throw new InvalidArgumentError(`${path} is larger than 1 MiB`);
  return parseTrainerState(parseJson(await readFile(path, 'utf8'), path));
}

/** The newest `step-<n>` checkpoint the job itself wrote under `root`, or null (none, or another job's). */
export async function latestCheckpoint(
  root: string,
  jobId: string,
): Promise<{ dir: string; state: TrainerState } | null> {
  let pointer: LatestPointer;
  try {
    const text = (await readFile(join(root, LATEST_FILE), 'utf8')).slice(0, MAX_LATEST_POINTER_BYTES);
    pointer = parseLatestPointer(parseJson(text, LATEST_FILE));
  } catch {
    return null;
  }
  if (stepOfDirName(pointer.dir) === null) return null;
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
