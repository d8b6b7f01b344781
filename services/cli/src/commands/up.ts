// `spark up`: a whole local Spark cluster on this machine (private redis-server unless --redis-url /
// REDIS_URL, every service as a child process, real gRPC on loopback). Prints the coordinator address,
// records it in `<data dir>/cluster.json` so `spark submit/jobs/watch/cancel` find it, and runs until
// Ctrl-C / SIGTERM (clean stop: exit 0) or until a service dies on its own (the whole cluster stops, the
// dead service's last log lines are printed, exit 1).
import { rmSync, writeFileSync } from 'node:fs';

import { InvalidArgumentError, type Command } from 'commander';

import { clusterFile, DEFAULT_DATA_DIR } from '../client/index.js';
import { startLocalCluster, type LocalCluster, type ServiceName } from '../launcher/index.js';

const SERVICES: readonly ServiceName[] = [
  'learner',
  'coordinator',
  'verifier',
  'reward-synthesis',
  'rollout',
];

/** Parses --only: a comma-separated subset of the services. */
export function serviceList(value: string): ServiceName[] {
  const names = value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const bad = names.filter((n) => !SERVICES.includes(n as ServiceName));
  if (bad.length || names.length === 0)
    throw new InvalidArgumentError(
      `expected a comma-separated subset of ${SERVICES.join(', ')}; unknown: ${bad.join(', ') || '(empty)'}`,
    );
  return names as ServiceName[];
}

/** Parses a whole number option within bounds (commander argParser). */
export function intOption(min: number, max: number): (value: string) => number {
  return (value: string) => {
    const n = Number(value);
    if (!/^\d+$/.test(value.trim()) || !Number.isInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}`);
    return n;
  };
}

interface UpOptions {
  redisUrl?: string;
  rolloutWorkers: number;
  verifierWorkers: number;
  learnerRanks: number;
  dataDir: string;
  port: number;
  prefix: string;
  only?: ServiceName[];
}

/** Resolves when the process receives SIGINT or SIGTERM (the listeners are removed afterwards). */
export function untilSignal(): { promise: Promise<NodeJS.Signals>; dispose: () => void } {
  let dispose: () => void = () => undefined;
  const promise = new Promise<NodeJS.Signals>((resolve) => {
    const on = (sig: NodeJS.Signals) => () => resolve(sig);
    const onInt = on('SIGINT');
    const onTerm = on('SIGTERM');
    process.once('SIGINT', onInt);
    process.once('SIGTERM', onTerm);
    dispose = () => {
      process.removeListener('SIGINT', onInt);
      process.removeListener('SIGTERM', onTerm);
    };
  });
  return { promise, dispose };
}

export function register(program: Command): void {
  program
    .command('up')
    .description('run a whole local Spark cluster (Redis + every service) until Ctrl-C')
    .option('--redis-url <url>', 'use this Redis instead of a private redis-server (also: REDIS_URL)')
    .option('--rollout-workers <n>', 'rollout worker processes', intOption(1, 16), 1)
    .option('--verifier-workers <n>', 'verifier worker processes', intOption(1, 16), 1)
    .option('--learner-ranks <n>', 'ranks of the learner group (data parallelism)', intOption(1, 16), 1)
    .option('--data-dir <dir>', 'where logs, checkpoints and cluster.json go', DEFAULT_DATA_DIR)
    .option('--port <port>', 'coordinator JobService port (0 = any free port)', intOption(0, 65535), 0)
    .option('--prefix <prefix>', 'Redis key prefix shared by the services', 'spark')
    .option('--only <services>', 'run only these services (comma-separated; for debugging)', serviceList)
    .action(async (opts: UpOptions) => {
      const signal = untilSignal();
      const abort = new AbortController();
      void signal.promise.then(() => abort.abort());
      const redisUrl = opts.redisUrl ?? process.env.REDIS_URL;
      let cluster: LocalCluster;
      try {
        cluster = await startLocalCluster({
          dataDir: opts.dataDir,
          ...(redisUrl ? { redisUrl } : {}),
          prefix: opts.prefix,
          rolloutWorkers: opts.rolloutWorkers,
          verifierWorkers: opts.verifierWorkers,
          learnerRanks: opts.learnerRanks,
          coordinatorPort: opts.port,
          log: (line) => process.stdout.write(`spark up: ${line}\n`),
          signal: abort.signal,
          ...(opts.only ? { services: opts.only } : {}),
        });
      } catch (err) {
        signal.dispose();
        throw err;
      }
      const file = clusterFile(cluster.dataDir);
      writeFileSync(
        file,
        `${JSON.stringify({ coordinatorAddress: cluster.coordinatorAddress, pid: process.pid, children: cluster.children.map((c) => ({ name: c.name, pid: c.pid, logFile: c.logFile })) }, null, 2)}\n`,
      );
      process.stdout.write(
        `spark up: cluster ready — coordinator at ${cluster.coordinatorAddress || '(not started)'} (logs in ${cluster.dataDir}/logs)\n` +
          `spark up: submit with \`spark submit JOB.yaml\`; Ctrl-C stops everything\n`,
      );
      const outcome = await Promise.race([
        signal.promise.then((sig) => ({ kind: 'signal' as const, sig })),
        cluster.failure.then((f) => ({ kind: 'failure' as const, f })),
      ]);
      signal.dispose();
      if (outcome.kind === 'signal')
        process.stdout.write(`spark up: ${outcome.sig} received, stopping the cluster\n`);
      else {
        const f = outcome.f;
        process.stderr.write(
          `spark up: ${f.name} died unexpectedly (${f.signal ?? `status ${f.code}`}); stopping the cluster.\n` +
            `last log lines of ${f.name}:\n${f.logTail}\n`,
        );
      }
      await cluster.stop();
      rmSync(file, { force: true });
      process.stdout.write('spark up: stopped\n');
      if (outcome.kind === 'failure') process.exitCode = 1;
    });
}
