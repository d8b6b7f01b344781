// Checkpoints in an object store (@spark/runtime/storage), in the layout of checkpoint-layout.ts:
//
//   checkpoints/<jobId>/latest.json            the LatestPointer
//   checkpoints/<jobId>/<step-n|warmup>/<file> the files of one checkpoint directory
//
// The learner publishes each checkpoint it writes (every file of the directory, then latest.json last, so
// a reader that follows latest.json never finds a checkpoint half-written); rollout workers answering
// Generate and `spark eval` fetch one into a local cache directory and load it from there as before. A
// checkpoint is named `job:<jobId>` (its latest) or `job:<jobId>/<dir>` (one directory).
import { mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import { InvalidArgumentError, NotFoundError } from '@spark/runtime';
import type { ObjectStore } from '@spark/runtime/storage';

import {
  CHECKPOINT_FILES,
  CHECKPOINT_NAME_PATTERN,
  MAX_LATEST_POINTER_BYTES,
  parseLatestPointer,
} from './checkpoint-layout.js';
import { JOB_ID_PATTERN } from './keys.js';
import { parseJson } from './parse.js';

/** A checkpoint in the store: the job's latest (`dir` null) or one named directory. */
export interface StoredCheckpointRef {
  readonly jobId: string;
  readonly dir: string | null;
}

const REF = /^job:([^/]+)(?:\/([^/]+))?$/;

/**
 * `job:<jobId>` or `job:<jobId>/<dir>` parsed; null when `text` does not start with `job:` (a path);
 * InvalidArgumentError when it does but is malformed.
 */
export function parseStoredCheckpointRef(text: string): StoredCheckpointRef | null {
  if (!text.startsWith('job:')) return null;
  const m = REF.exec(text);
  if (!m)
    throw new InvalidArgumentError(
      `checkpoint "${text.slice(0, 200)}": must be job:<jobId> or job:<jobId>/<checkpoint dir>`,
    );
  const [, jobId = '', dir] = m;
  if (!JOB_ID_PATTERN.test(jobId))
    throw new InvalidArgumentError(
      `checkpoint "${text.slice(0, 200)}": "${jobId.slice(0, 80)}" is not a job id`,
    );
  if (dir !== undefined && !CHECKPOINT_NAME_PATTERN.test(dir))
    throw new InvalidArgumentError(
      `checkpoint "${text.slice(0, 200)}": "${dir.slice(0, 80)}" is not a checkpoint name`,
    );
  return { jobId, dir: dir ?? null };
}

/** The store key prefix of a job's checkpoints (`checkpoints/<jobId>/`). */
export function checkpointPrefix(jobId: string): string {
  return `checkpoints/${jobId}/`;
}

/** Most files one checkpoint directory may hold (weights shards included). */
export const MAX_CHECKPOINT_FILES = 1024;

/**
 * Uploads `<localRoot>/<name>/*` to the store, then points the job's latest.json at it. Returns the number
 * of bytes uploaded.
 */
export async function publishCheckpoint(
  store: ObjectStore,
  jobId: string,
  localRoot: string,
  name: string,
  step: number,
): Promise<number> {
  if (!CHECKPOINT_NAME_PATTERN.test(name)) throw new InvalidArgumentError(`bad checkpoint name "${name}"`);
  const dir = join(localRoot, name);
  const files = (await readdir(dir, { withFileTypes: true }))
    .filter((e) => e.isFile() && !e.name.endsWith('.tmp') && !e.name.startsWith('.'))
    .map((e) => e.name)
    .slice(0, MAX_CHECKPOINT_FILES);
  let bytes = 0;
  for (const f of files) {
    await store.putFile(`${checkpointPrefix(jobId)}${name}/${f}`, join(dir, f));
    bytes += (await stat(join(dir, f))).size;
  }
  await store.putBytes(
    `${checkpointPrefix(jobId)}${CHECKPOINT_FILES.latest}`,
    Buffer.from(JSON.stringify({ dir: name, step }) + '\n'),
  );
  return bytes;
}

/** Marker a complete fetched copy carries (the list of its files). */
const COMPLETE = '.fetched.json';

/**
 * Fetches a stored checkpoint into `<cacheRoot>/<jobId>/<dir>/` (reused when already complete there) and
 * returns that directory. NotFoundError when the store has no such checkpoint.
 */
export async function fetchCheckpoint(
  store: ObjectStore,
  ref: StoredCheckpointRef,
  cacheRoot: string,
  maxFileBytes: number,
): Promise<string> {
  const prefix = checkpointPrefix(ref.jobId);
  let dir = ref.dir;
  if (dir === null) {
    const text = await store.getBytes(`${prefix}${CHECKPOINT_FILES.latest}`, MAX_LATEST_POINTER_BYTES);
    if (!text) throw new NotFoundError(`no checkpoint of job ${ref.jobId} in ${store.url}`);
    dir = parseLatestPointer(parseJson(text.toString('utf8'), `${ref.jobId}/latest.json`)).dir;
  }
  const keys = (await store.list(`${prefix}${dir}/`, MAX_CHECKPOINT_FILES + 1)).filter(
    (k) => !k.slice(prefix.length + dir.length + 1).includes('/'),
  );
  if (keys.length === 0) throw new NotFoundError(`no checkpoint ${ref.jobId}/${dir} in ${store.url}`);
  if (keys.length > MAX_CHECKPOINT_FILES)
    throw new InvalidArgumentError(
      `checkpoint ${ref.jobId}/${dir} has more than ${MAX_CHECKPOINT_FILES} files`,
    );
  const names = keys
    .map((k) => k.slice(prefix.length + dir.length + 1))
    .filter((n) => !n.startsWith('.'))
    .sort();
  const local = join(cacheRoot, ref.jobId, dir);
  const marker = join(local, COMPLETE);
  const have = await stat(marker).then(
    () => true,
    () => false,
  );
  // a complete copy is reused while the store lists the same files for it (a step directory is written
  // once per step; one rewritten with the same file names after a learner restart is not noticed)
  if (have) {
    const listed = JSON.parse(await readFile(marker, 'utf8')) as { files?: unknown };
    if (JSON.stringify(listed.files) === JSON.stringify(names)) return local;
  }
  const staging = `${local}.${process.pid}.${Date.now()}.partial`;
  await mkdir(staging, { recursive: true });
  try {
    for (const [i, key] of keys.entries()) {
      const ok = await store.getFile(key, join(staging, names[i] as string), maxFileBytes);
      if (!ok) throw new NotFoundError(`checkpoint file ${key} vanished from ${store.url} while fetching`);
    }
    await writeFile(join(staging, COMPLETE), JSON.stringify({ files: names }) + '\n');
    await rm(local, { recursive: true, force: true });
    await mkdir(join(cacheRoot, ref.jobId), { recursive: true });
    await rename(staging, local);
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
  return local;
}

/**
 * Puts the job's latest stored checkpoint (`step-<n>` or `warmup`) back into `checkpointDir`
 * (`<checkpointDir>/<dir>/` and latest.json) when that directory has no latest.json of its own — a learner
 * whose volume was lost resumes from the store (the learner verifies it against its manifest before
 * loading). Returns the restored directory, or null (nothing stored, or a local latest.json exists).
 */
export async function restoreCheckpoint(
  store: ObjectStore,
  jobId: string,
  checkpointDir: string,
  maxFileBytes: number,
): Promise<string | null> {
  const localLatest = join(checkpointDir, CHECKPOINT_FILES.latest);
  if (
    await stat(localLatest).then(
      () => true,
      () => false,
    )
  )
    return null;
  const text = await store.getBytes(
    `${checkpointPrefix(jobId)}${CHECKPOINT_FILES.latest}`,
    MAX_LATEST_POINTER_BYTES,
  );
  if (!text) return null;
  const pointer = parseLatestPointer(parseJson(text.toString('utf8'), `${jobId}/latest.json`));
  const staging = join(checkpointDir, '.restore');
  const fetched = await fetchCheckpoint(store, { jobId, dir: pointer.dir }, staging, maxFileBytes);
  const target = join(checkpointDir, pointer.dir);
  await rm(target, { recursive: true, force: true });
  await rename(fetched, target);
  await rm(join(target, COMPLETE), { force: true });
  await rm(staging, { recursive: true, force: true });
  await writeFile(`${localLatest}.tmp`, JSON.stringify(pointer) + '\n');
  await rename(`${localLatest}.tmp`, localLatest);
  return target;
}
