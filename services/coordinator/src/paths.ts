// Job paths confined to the cluster's roots: a job spec may name a dataset file or a checkpoint directory
// (its model) only below the configured dataset root (`datasetDir`) or checkpoint root (`dataDir`), and
// its own checkpoint directory only below the checkpoint root. Symlinks are resolved (realpath) before the
// check, so a link inside a root that points outside is refused like the outside path itself; `..` is
// resolved first, so it cannot climb out. Every refusal of a read path is the same message whatever the
// reason (missing, outside, unreadable, wrong kind), so a caller learns nothing about the coordinator's
// files outside the roots.
import { accessSync, constants, realpathSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve, sep } from 'node:path';

/** The roots a job's paths must stay below, as configured (absolute or relative to the working dir). */
export interface JobRoots {
  /** Dataset files (and uploaded datasets, under `<datasetDir>/uploads`). */
  readonly datasetDir: string;
  /** Checkpoints: each job's own directory (`<dataDir>/<jobId>` by default) and checkpoints to start from. */
  readonly dataDir: string;
}

/** The roots named in messages: absolute, in a fixed order. */
export function rootList(roots: JobRoots): string[] {
  return [resolve(roots.datasetDir), resolve(roots.dataDir)];
}

function within(path: string, root: string): boolean {
  return path === root || path.startsWith(root.endsWith(sep) ? root : root + sep);
}

function realOrNull(path: string): string | null {
  try {
    return realpathSync(path);
  } catch {
    return null;
  }
}

/** `path` resolved (relative to `base`) and realpath'd when it lies below one of `roots`; else null. */
function confinedReal(path: string, base: string, roots: readonly string[]): string | null {
  const abs = resolve(base, path);
  const real = realOrNull(abs);
  if (real === null) return null;
  for (const root of roots) {
    const r = realOrNull(root);
    if (r !== null && within(real, r)) return real;
  }
  return null;
}

/**
 * The real path of a readable dataset file below the roots (relative names are taken below the dataset
 * root), or null. Callers turn null into one message that does not depend on why.
 */
export function confinedDatasetFile(path: string, roots: JobRoots): string | null {
  const real = confinedReal(path, resolve(roots.datasetDir), rootList(roots));
  if (real === null) return null;
  try {
    if (!statSync(real).isFile()) return null;
    accessSync(real, constants.R_OK);
    return real;
  } catch {
    return null;
  }
}

/**
 * The real path of a checkpoint directory holding a readable `configFile` below the roots (relative names
 * are taken below the checkpoint root), or null.
 */
export function confinedCheckpointDir(path: string, roots: JobRoots, configFile: string): string | null {
  const real = confinedReal(path, resolve(roots.dataDir), rootList(roots));
  if (real === null) return null;
  try {
    if (!statSync(real).isDirectory()) return null;
    accessSync(join(real, configFile), constants.R_OK);
    return real;
  } catch {
    return null;
  }
}

/**
 * Where a job may write its checkpoints: `path` (relative names below the checkpoint root) resolved, when
 * it lies below the checkpoint root, else null. The directory need not exist (the learner creates it, on
 * its own volume, which the coordinator may not mount); the part of it that exists here must not leave the
 * root through a symlink.
 */
export function confinedCheckpointTarget(path: string, roots: JobRoots): string | null {
  const root = resolve(roots.dataDir);
  const abs = isAbsolute(path) ? resolve(path) : resolve(root, path);
  if (abs === root || !within(abs, root)) return null;
  const realRoot = realOrNull(root);
  if (realRoot === null) return abs; // the root is not on this host (e.g. only the learner mounts it)
  // the deepest existing ancestor must still be below the real root
  let probe = abs;
  for (;;) {
    const real = realOrNull(probe);
    if (real !== null) return within(real, realRoot) ? abs : null;
    const up = dirname(probe);
    if (up === probe) return null;
    probe = up;
  }
}
