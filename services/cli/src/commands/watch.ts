// `spark watch ID`: follows a job's progress events (replayed from the start, then live) until it ends —
// a redrawn progress bar with the key figures on a TTY, one plain line per event otherwise. Exit status:
// 0 succeeded, 1 failed, 2 cancelled.
import type { Command } from 'commander';

import { exitCodeFor, followJob } from '../client/follow.js';
import { clientFromFlags, withConnectOptions, type ConnectFlags } from '../client/options.js';

export function register(program: Command): void {
  withConnectOptions(
    program.command('watch').description('follow a job until it ends').argument('<job-id>', 'the job id'),
  ).action(async (jobId: string, opts: ConnectFlags) => {
    const client = clientFromFlags(opts);
    try {
      const { state, status } = await followJob(client, jobId);
      process.stdout.write(
        `job ${jobId} ${state.toLowerCase()}${status.message ? `: ${status.message}` : ''}\n`,
      );
      process.exitCode = exitCodeFor(state);
    } finally {
      client.close();
    }
  });
}
