// A real S3-compatible server for tests: versitygw (github.com/versity/versitygw, its posix backend over a
// temporary directory), built by `.ci/run` into `.tools/bin/versitygw` from the Go module proxy. Tests call
// `s3Skip()` for their `skip` option: without the binary they skip with a message outside CI and run —
// and fail in `startTestS3` — under CI=true.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';

import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';

import { freePort } from '../redis/index.js';
import { S3ObjectStore } from '../storage/index.js';
import { until } from './index.js';

/** The pinned versitygw release `.ci/run` builds. */
export const VERSITYGW_VERSION = 'v1.8.0';

const repoRoot = resolve(import.meta.dirname, '../../../../..');

/** $SPARK_S3_SERVER, .tools/bin/versitygw (.ci/run), $GOPATH/bin, then PATH; null when none exists. */
export function findS3Server(): string | null {
  const candidates = [
    process.env.SPARK_S3_SERVER,
    join(repoRoot, '.tools', 'bin', 'versitygw'),
    process.env.GOPATH ? join(process.env.GOPATH, 'bin', 'versitygw') : undefined,
    ...(process.env.PATH ?? '').split(delimiter).map((d) => (d ? join(d, 'versitygw') : undefined)),
  ];
  return candidates.find((c): c is string => !!c && existsSync(c)) ?? null;
}

const inCI = process.env.CI === 'true' || process.env.CI === '1';

/** A `skip` value for tests that need the S3 server: a reason when it is missing outside CI, else false. */
export function s3Skip(): string | false {
  if (findS3Server() || inCI) return false;
  return `no S3 server binary: .ci/run builds it (go install github.com/versity/versitygw/cmd/versitygw@${VERSITYGW_VERSION} into .tools/bin)`;
}

export interface TestS3 {
  readonly endpoint: string;
  readonly region: string;
  readonly bucket: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** The backing directory (objects are files below `<dir>/<bucket>`). */
  readonly dir: string;
  /** A client of this server's bucket, its keys below `prefix`. */
  openStore(prefix?: string): S3ObjectStore;
  stop(): Promise<void>;
}

/** Starts versitygw on a free port with a fresh bucket; throws when the binary is missing or it fails. */
export async function startTestS3(bucket = 'spark-test'): Promise<TestS3> {
  const bin = findS3Server();
  if (!bin) throw new Error(s3Skip() || 'the S3 server binary (versitygw) is missing; run .ci/run');
  const dir = mkdtempSync(join(tmpdir(), 'spark-s3-'));
  const port = await freePort();
  const accessKeyId = 'sparktest';
  const secretAccessKey = 'sparktest-secret-key';
  const endpoint = `http://127.0.0.1:${port}`;
  const child: ChildProcess = spawn(
    bin,
    [
      '--access',
      accessKeyId,
      '--secret',
      secretAccessKey,
      '--port',
      `127.0.0.1:${port}`,
      '--quiet',
      'posix',
      dir,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  let exited = false;
  child.on('exit', () => (exited = true));
  const stop = async () => {
    if (!exited) {
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const client = new S3Client({
    endpoint,
    region: 'us-east-1',
    forcePathStyle: true,
    credentials: { accessKeyId, secretAccessKey },
    maxAttempts: 1,
  });
  try {
    await until(
      async () => {
        if (exited) throw new Error(`versitygw exited at start: ${stderr}`);
        return client.send(new CreateBucketCommand({ Bucket: bucket })).then(
          () => true,
          () => false,
        );
      },
      { timeoutMs: 30_000, intervalMs: 100, message: `versitygw on ${endpoint} to create a bucket` },
    );
  } catch (err) {
    await stop();
    throw err;
  } finally {
    client.destroy();
  }
  const region = 'us-east-1';
  const openStore = (prefix = ''): S3ObjectStore =>
    new S3ObjectStore({
      endpoint,
      region,
      bucket,
      prefix,
      accessKeyId,
      secretAccessKey,
      forcePathStyle: true,
      requestTimeoutMs: 30_000,
    });
  return { endpoint, region, bucket, accessKeyId, secretAccessKey, dir, openStore, stop };
}
