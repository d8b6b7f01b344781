// `spark cancel ID`: asks the cluster to stop a queued or running job and prints its state afterwards
// (the driver stops at its next wait; `spark watch ID` shows when it is CANCELLED). A job that already
// ended is reported with exit 1.
import type { Command } from 'commander';

import { shortState } from '../client/index.js';
import { clientFromFlags, withConnectOptions, type ConnectFlags } from '../client/options.js';

export function register(program: Command): void {
  withConnectOptions(
    program
      .command('cancel')
      .description('cancel a queued or running job')
      .argument('<job-id>', 'the job id'),
  ).action(async (jobId: string, opts: ConnectFlags) => {
    const client = clientFromFlags(opts);
    try {
      const status = await client.cancel(jobId);
      process.stdout.write(
        `job ${jobId}: ${shortState(status.state)}${status.message ? ` (${status.message})` : ''}\n`,
      );
    } finally {
      client.close();
    }
  });
}
