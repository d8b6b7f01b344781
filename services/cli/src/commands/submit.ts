// `spark submit JOB.yaml [--watch]`: reads a YAML/JSON job spec (proto JSON field names; unknown keys and
// wrong types are rejected here, every one listed), submits it to the cluster's JobService and prints the
// job id. With --watch it then follows the job like `spark watch` (same exit codes). A spec the
// coordinator rejects prints every problem it listed and exits 1.
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
      .option('--watch', 'follow the job until it ends'),
  ).action(async (file: string, opts: ConnectFlags & { watch?: boolean }) => {
    const spec = readSpecFile(file);
    const client = clientFromFlags(opts);
    try {
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
