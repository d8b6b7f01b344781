// The connection options every client command shares (--address, --token, TLS files, --deadline, the
// data dir whose cluster.json `spark up` wrote) and their resolution into ConnectOptions.
import type { Command } from 'commander';

import { DEFAULT_DATA_DIR, JobClient, resolveConnect } from './index.js';

export interface ConnectFlags {
  address?: string;
  token?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  deadline: string;
  dataDir: string;
}

/** Adds the shared connection flags to a command. */
export function withConnectOptions(cmd: Command): Command {
  return cmd
    .option(
      '--address <host:port>',
      'coordinator JobService address (default: $SPARK_ADDRESS, else the one `spark up` recorded)',
    )
    .option('--token <token>', 'bearer token (default: $SPARK_AUTH_TOKEN; none for a local cluster)')
    .option('--tls-ca <file>', 'PEM CA file: connect with TLS and trust this CA')
    .option('--tls-cert <file>', 'PEM client certificate (mTLS)')
    .option('--tls-key <file>', 'PEM client key (mTLS)')
    .option('--deadline <ms>', 'deadline of each call in milliseconds', '10000')
    .option('--data-dir <dir>', 'where `spark up` recorded the cluster address', DEFAULT_DATA_DIR);
}

/** A client for the flags; throws a clear error for a bad deadline or an unknown address. */
export function clientFromFlags(flags: ConnectFlags): JobClient {
  const deadlineMs = Number(flags.deadline);
  if (!Number.isInteger(deadlineMs) || deadlineMs < 100 || deadlineMs > 600_000)
    throw new Error(
      `--deadline must be a whole number of milliseconds from 100 to 600000, got "${flags.deadline}"`,
    );
  return new JobClient(
    resolveConnect({
      ...(flags.address !== undefined ? { address: flags.address } : {}),
      ...(flags.token !== undefined ? { token: flags.token } : {}),
      ...(flags.tlsCa !== undefined ? { tlsCa: flags.tlsCa } : {}),
      ...(flags.tlsCert !== undefined ? { tlsCert: flags.tlsCert } : {}),
      ...(flags.tlsKey !== undefined ? { tlsKey: flags.tlsKey } : {}),
      dataDir: flags.dataDir,
      deadlineMs,
    }),
  );
}
