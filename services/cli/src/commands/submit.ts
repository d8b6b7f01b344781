// `spark submit JOB.yaml [--watch]`: reads a YAML/JSON job spec (proto JSON field names; unknown keys and
// wrong types are rejected here, every one listed), submits it to the cluster's JobService and prints the
// job id. With --watch it then follows the job like `spark watch` (same exit codes). A spec the
// coordinator rejects prints every problem it listed and exits 1. A `dataset` that names a file on this
// machine (relative names: next to the spec file) is uploaded first (JobService.UploadDataset) and the
// spec sent with the name the cluster gave it (`sha256:<hex>`); --no-upload sends the path as it is (a
// path on the cluster, below its dataset or checkpoint root).
import { existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

import type { Command } from 'commander';

import { exitCodeFor, followJob } from '../client/follow.js';
import { clientFromFlags, withConnectOptions, type ConnectFlags } from '../client/options.js';
import { readSpecFile } from '../client/spec.js';

export function register(program: Command): void {
  withConnectOptions(
    program
      .command('submit')
      .description('submit a training job from a YAML/JSON spec file')
      .argument('<spec>', 'job spec file (YAML or JSON; see docs/jobs.md)')
      .option('--watch', 'follow the job until it ends')
      .option('--no-upload', 'send `dataset` as a path on the cluster even when it names a file here'),
  ).action(async (file: string, opts: ConnectFlags & { watch?: boolean; upload: boolean }) => {
    const spec = readSpecFile(file);
    const client = clientFromFlags(opts);
    try {
      const local = opts.upload ? localDataset(file, spec.dataset) : null;
      if (local) {
        const up = await client.uploadDataset(local, { format: spec.datasetFormat });
        process.stderr.write(
          `dataset ${local}: ${up.existed ? 'already on the cluster' : 'uploaded'} as ${up.dataset} ` +
            `(${up.records} records, ${up.badLines} bad lines)\n`,
        );
        spec.dataset = up.dataset;
      }
      const res = await client.submit(spec);
      process.stdout.write(`${res.jobId}\n`);
      if (!opts.watch) return;
      const { state, status } = await followJob(client, res.jobId);
      process.stdout.write(
        `job ${res.jobId} ${state.toLowerCase()}${status.message ? `: ${status.message}` : ''}\n`,
      );
      process.exitCode = exitCodeFor(state);
    } finally {
      client.close();
    }
  });
}

/** The file on this machine that a spec's `dataset` names (relative: next to the spec file), or null. */
function localDataset(specFile: string, dataset: string): string | null {
  const name = dataset.trim();
  if (name === '' || name === 'builtin' || name.startsWith('sha256:')) return null;
  const path = resolve(dirname(specFile), name);
  return existsSync(path) && statSync(path).isFile() ? path : null;
}
