// `spark jobs`: the cluster's recent jobs, newest first — id, state, step, policy version, algorithm,
// name, owner (the submitting principal) and age — as a table, or as JSON with --json.
import type { Command } from 'commander';

import { algorithmToJSON, JobStatus } from '@spark/protocol';

import { shortState } from '../client/index.js';
import { clientFromFlags, withConnectOptions, type ConnectFlags } from '../client/options.js';
import { intOption } from './up.js';

function age(ms: number): string {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

/** The jobs as a fixed-width table. */
export function formatJobsTable(jobs: readonly JobStatus[]): string {
  if (jobs.length === 0) return 'no jobs';
  const rows = jobs.map((j) => [
    j.jobId,
    shortState(j.state),
    String(j.step),
    String(j.policyVersion),
    j.spec
      ? algorithmToJSON(j.spec.algorithm)
          .replace(/^ALGORITHM_/, '')
          .toLowerCase()
          .replace('_', '-')
      : '',
    (j.spec?.name ?? '').slice(0, 40),
    j.owner.slice(0, 40),
    j.createdAtMs ? age(j.createdAtMs) : '',
  ]);
  const head = ['ID', 'STATE', 'STEP', 'VERSION', 'ALGORITHM', 'NAME', 'OWNER', 'AGE'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [head, ...rows]
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function register(program: Command): void {
  withConnectOptions(
    program
      .command('jobs')
      .description('list recent jobs, newest first (a researcher sees only its own)')
      .option('--limit <n>', 'at most this many jobs', intOption(1, 500), 50)
      .option('--json', 'print the job statuses as JSON'),
  ).action(async (opts: ConnectFlags & { limit: number; json?: boolean }) => {
    const client = clientFromFlags(opts);
    try {
      const jobs = await client.list(opts.limit);
      if (opts.json)
        process.stdout.write(
          `${JSON.stringify(
            jobs.map((j) => JobStatus.toJSON(j)),
            null,
            2,
          )}\n`,
        );
      else process.stdout.write(`${formatJobsTable(jobs)}\n`);
    } finally {
      client.close();
    }
  });
}
