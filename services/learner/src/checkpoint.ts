// Learner checkpoints, in the layout of @spark/contract's checkpoint-layout (file names, `step-<n>`
// naming, latest.json, trainer_state.json and manifest.json schemas): `<dir>/step-<n>/` holds config.json
// + model.safetensors (Hugging Face names, so `Model.load` and transformers read it),
// optimizer.safetensors (AdamW moments and step), reference.safetensors (the frozen GRPO reference, once
// RL started), trainer_state.json (job id, step, policy version, optimizer-step counters = the
// lr-schedule position) and manifest.json (size and SHA-256 of every other file).
//
// Atomic: a checkpoint is written into a hidden temporary directory (`.tmp-<name>-…`), every file and the
// directory fsync'ed, the manifest written last, then renamed into place and the root fsync'ed; only then
// is `<dir>/latest.json` (itself written to a temporary name, synced and renamed) pointed at it. A
// restarted learner resumes from the newest checkpoint that verifies against its manifest (latest.json's
// when it does); a torn, truncated or corrupted one is never loaded, and the log says why it was skipped.
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { InvalidArgumentError, describeError } from '@spark/runtime';
import type { Logger } from '@spark/runtime/logging';
import {
  CHECKPOINT_FILES,
  CHECKPOINT_NAME_PATTERN,
  MAX_LATEST_POINTER_BYTES,
  MAX_MANIFEST_BYTES,
  MAX_TRAINER_STATE_BYTES,
  WARMUP_CHECKPOINT,
  parseCheckpointManifest,
  parseJson,
  parseLatestPointer,
  parseTrainerState,
  stepDirName,
  stepOfDirName,
  type CheckpointManifest,
  type LatestPointer,
  type TrainerState,
} from '@spark/contract';
import { Model } from '@spark/kernels';

export type { TrainerState } from '@spark/contract';
export const TRAINER_STATE_FILE = CHECKPOINT_FILES.trainerState;
export const REFERENCE_FILE = CHECKPOINT_FILES.reference;
export const LATEST_FILE = CHECKPOINT_FILES.latest;
export const MANIFEST_FILE = CHECKPOINT_FILES.manifest;

/** Prefixes of the hidden work directories in a checkpoint root (never read as checkpoints). */
const TMP_PREFIX = '.tmp-';
const OLD_PREFIX = '.old-';

/** fsync of a file or directory (a directory's fsync makes the renames inside it durable). */
async function fsyncPath(path: string): Promise<void> {
  const fh = await open(path, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

async function writeSynced(path: string, text: string): Promise<void> {
  const fh = await open(path, 'w');
  try {
    await fh.writeFile(text);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Writes `text` to `path` atomically and durably: temp file, fsync, rename, fsync of the directory. */
async function writeAtomic(path: string, text: string, dir: string): Promise<void> {
  const tmp = `${path}.tmp`;
  await writeSynced(tmp, text);
  await rename(tmp, path);
  await fsyncPath(dir);
}

/** SHA-256 (hex) and size of a file, streamed. */
export async function fileDigest(path: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(path) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** Digests and fsyncs every regular file of `dir` (but a manifest) and writes its manifest.json, synced. */
async function writeManifest(dir: string): Promise<CheckpointManifest> {
  const names = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isFile() && e.name !== MANIFEST_FILE)
    .map((e) => e.name)
    .sort();
  const files: { name: string; bytes: number; sha256: string }[] = [];
  for (const name of names) {
    await fsyncPath(join(dir, name));
    files.push({ name, ...(await fileDigest(join(dir, name))) });
  }
  const manifest = parseCheckpointManifest({ format: 1, files });
  await writeSynced(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n');
  await fsyncPath(dir);
  return manifest;
}

/**
 * Writes one checkpoint directory (`step-<n>`, or `name` when given: the end of warm-up is `warmup`)
 * atomically (see the top of this file) and points latest.json at it; returns the directory. A directory
 * of the same name is replaced: it is moved aside first, so a crash in between leaves neither (the loader
 * then falls back to the previous complete checkpoint) but never a mix of both.
 */
export async function writeCheckpoint(
  root: string,
  model: Model,
  reference: Model | null,
  state: TrainerState,
  name = stepDirName(state.step),
): Promise<string> {
  if (!CHECKPOINT_NAME_PATTERN.test(name)) throw new InvalidArgumentError(`bad checkpoint name "${name}"`);
  await mkdir(root, { recursive: true });
  const nonce = `${process.pid}-${randomBytes(4).toString('hex')}`;
  const tmp = join(root, `${TMP_PREFIX}${name}-${nonce}`);
  const dir = join(root, name);
  try {
    await model.save(tmp, { optimizer: true });
    if (reference) await reference.saveWeights(join(tmp, REFERENCE_FILE));
    await writeFile(join(tmp, TRAINER_STATE_FILE), JSON.stringify(state, null, 2) + '\n');
    await writeManifest(tmp);
    const old = join(root, `${OLD_PREFIX}${name}-${nonce}`);
    const replaced = await rename(dir, old).then(
      () => true,
      (err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT') return false;
        throw err;
      },
    );
    await rename(tmp, dir);
    await fsyncPath(root);
    if (replaced) await rm(old, { recursive: true, force: true });
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
  const pointer: LatestPointer = { dir: name, step: state.step };
  await writeAtomic(join(root, LATEST_FILE), JSON.stringify(pointer) + '\n', root);
  return dir;
}

/** Reads and checks a trainer_state.json (the contract's schema). */
export async function readTrainerState(dir: string): Promise<TrainerState> {
  const path = join(dir, TRAINER_STATE_FILE);
  const info = await stat(path);
  if (info.size > MAX_TRAINER_STATE_BYTES) throw new InvalidArgumentError(`${path} is larger than 1 MiB`);
  return parseTrainerState(parseJson(await readFile(path, 'utf8'), path));
}

/**
 * Verifies a checkpoint directory against its manifest.json: every listed file present with its size and
 * SHA-256. Throws InvalidArgumentError naming the first problem (no manifest: an incomplete or pre-manifest
 * checkpoint).
 */
export async function verifyCheckpoint(dir: string): Promise<CheckpointManifest> {
  const path = join(dir, MANIFEST_FILE);
  const info = await stat(path).catch(() => null);
  if (!info) throw new InvalidArgumentError(`${dir} has no ${MANIFEST_FILE} (incomplete checkpoint)`);
  if (info.size > MAX_MANIFEST_BYTES) throw new InvalidArgumentError(`${path} is larger than 1 MiB`);
  const manifest = parseCheckpointManifest(parseJson(await readFile(path, 'utf8'), path));
  for (const f of manifest.files) {
    const file = join(dir, f.name);
    const size = await stat(file).then(
      (s) => s.size,
      () => null,
    );
    if (size === null) throw new InvalidArgumentError(`${file} is missing`);
    if (size !== f.bytes)
      throw new InvalidArgumentError(`${file} has ${size} bytes, the manifest says ${f.bytes}`);
    const { sha256 } = await fileDigest(file);
    if (sha256 !== f.sha256)
      throw new InvalidArgumentError(`${file} does not match its SHA-256 in the manifest`);
  }
  if (!manifest.files.some((f) => f.name === TRAINER_STATE_FILE))
    throw new InvalidArgumentError(`${path} does not list ${TRAINER_STATE_FILE}`);
  return manifest;
}

/** A checkpoint a job resumes from. */
export interface ResumePoint {
  readonly dir: string;
  readonly name: string;
  readonly state: TrainerState;
}

/** Most checkpoint directories looked at when latest.json's does not verify. */
const MAX_CANDIDATES = 256;

/**
 * The checkpoint a restarted learner resumes `jobId` from, or null (none of the job's verifies): the newest
 * (highest policy version; latest.json's first on a tie) `step-<n>` or `warmup` directory under `root`
 * that the job itself wrote and that verifies against its manifest. Every one passed over is logged with
 * the reason (torn, corrupt, another job's).
 */
export async function latestCheckpoint(
  root: string,
  jobId: string,
  logger?: Logger,
): Promise<ResumePoint | null> {
  let pointer: LatestPointer | null = null;
  try {
    const text = (await readFile(join(root, LATEST_FILE), 'utf8')).slice(0, MAX_LATEST_POINTER_BYTES);
    pointer = parseLatestPointer(parseJson(text, LATEST_FILE));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
      logger?.warn({ root, err: describeError(err) }, 'unreadable latest.json: looking at every checkpoint');
  }
  const names = await readdir(root, { withFileTypes: true }).then(
    (es) =>
      es
        .filter((e) => e.isDirectory() && (e.name === WARMUP_CHECKPOINT || stepOfDirName(e.name) !== null))
        .map((e) => e.name),
    () => [] as string[],
  );
  const candidates: { name: string; state: TrainerState }[] = [];
  for (const name of names.slice(0, MAX_CANDIDATES)) {
    try {
      const state = await readTrainerState(join(root, name));
      if (state.jobId !== jobId) {
        logger?.warn({ dir: join(root, name), owner: state.jobId }, 'checkpoint of another job: not loaded');
        continue;
      }
      candidates.push({ name, state });
    } catch (err) {
      logger?.warn({ dir: join(root, name), err: describeError(err) }, 'torn checkpoint: not loaded');
    }
  }
  candidates.sort(
    (a, b) =>
      b.state.policyVersion - a.state.policyVersion ||
      Number(b.name === pointer?.dir) - Number(a.name === pointer?.dir) ||
      b.state.step - a.state.step,
  );
  for (const c of candidates) {
    const dir = join(root, c.name);
    try {
      await verifyCheckpoint(dir);
    } catch (err) {
      logger?.warn({ dir, err: describeError(err) }, 'checkpoint fails verification: not loaded');
      continue;
    }
    if (pointer && pointer.dir !== c.name)
      logger?.warn(
        { root, latest: pointer.dir, resumedFrom: c.name },
        "resuming from a checkpoint other than latest.json's",
      );
    return { dir, name: c.name, state: c.state };
  }
  return null;
}

/** Removes the hidden work directories a crashed checkpoint write left under `root`; returns their names. */
export async function removeCheckpointLeftovers(root: string): Promise<string[]> {
  const names = await readdir(root, { withFileTypes: true }).then(
    (es) =>
      es
        .filter((e) => e.isDirectory() && (e.name.startsWith(TMP_PREFIX) || e.name.startsWith(OLD_PREFIX)))
        .map((e) => e.name),
    () => [] as string[],
  );
  for (const n of names) await rm(join(root, n), { recursive: true, force: true });
  return names;
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
