// `spark doctor`: a health self-check of this machine for running Spark — toolchain, native addon, CUDA (driver,
// libraries, devices; optional), a real
// Redis with a BullMQ round trip, a real gRPC server on loopback (health, auth, reflection) and a metrics
// scrape checked by promtool. Prints one line per check and exits non-zero when a required check fails.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';

import type { Command } from 'commander';

import { describeError } from '@spark/runtime';
import { checkHealth, grpc, GrpcServer } from '@spark/runtime/grpc';
import { createLogger } from '@spark/runtime/logging';
import { ServiceMetrics, startMetricsServer } from '@spark/runtime/metrics';
import {
  createQueue,
  createQueueEvents,
  createWorker,
  enqueueBounded,
  redactRedisUrl,
  redisAnswers,
  startPrivateRedis,
  uniquePrefix,
} from '@spark/runtime/redis';

export interface CheckResult {
  name: string;
  ok: boolean;
  required: boolean;
  detail: string;
}

type Check = { name: string; required: boolean; run: () => Promise<string> };

const silent = createLogger({
  service: 'doctor',
  level: 'silent',
  destination: new Writable({ write: (_c, _e, cb) => cb() }),
});

async function withTimeout<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    if (timer) clearTimeout(timer);
  }
}

async function redisRoundTrip(redisUrl: string | undefined): Promise<string> {
  let url = redisUrl ?? '';
  let stop: (() => Promise<void>) | null = null;
  let where: string;
  if (url) {
    where = `REDIS_URL ${redactRedisUrl(url)}`;
    if (!(await redisAnswers(url, 2_000))) throw new Error(`no Redis answers at ${where}`);
  } else if (await redisAnswers('redis://127.0.0.1:6379', 500)) {
    url = 'redis://127.0.0.1:6379';
    where = 'local Redis at 127.0.0.1:6379';
  } else {
    const priv = await startPrivateRedis();
    url = priv.url;
    stop = () => priv.stop();
    where = `private redis-server on port ${priv.port}`;
  }
  const prefix = uniquePrefix('doctor');
  const queue = createQueue<{ n: number }>('doctor', { url, prefix });
  const events = createQueueEvents('doctor', { url, prefix });
  const worker = createWorker<{ n: number }, number>('doctor', async (job) => job.data.n + 1, {
    url,
    prefix,
  });
  let lastError: unknown = null;
  const onError = (err: Error) => (lastError = err);
  queue.on('error', onError);
  events.on('error', onError);
  worker.on('error', onError);
  try {
    await queue.waitUntilReady();
    await events.waitUntilReady();
    const started = Date.now();
    const done = new Promise<string>((resolve) =>
      events.on('completed', ({ returnvalue }) => resolve(String(returnvalue))),
    );
    await enqueueBounded(queue, 'ping', { n: 41 }, { jobId: 'ping', maxDepth: 10 });
    const value = await withTimeout(
      10_000,
      `BullMQ round trip (last error: ${describeError(lastError)})`,
      done,
    );
    if (value !== '42') throw new Error(`BullMQ round trip returned ${value}, expected 42`);
    await queue.obliterate({ force: true });
    return `${where}; BullMQ round trip in ${Date.now() - started} ms`;
  } finally {
    await worker.close();
    await events.close();
    await queue.close();
    await stop?.();
  }
}

async function grpcRoundTrip(): Promise<string> {
  const token = randomBytes(24).toString('hex');
  const server = new GrpcServer({
    service: 'doctor',
    logger: silent,
    authToken: token,
    maxMessageBytes: 4 * 1024 * 1024,
    reflectionProtos: ['spark/v1/job.proto'],
  });
  const port = await server.listen('127.0.0.1', 0);
  const address = `127.0.0.1:${port}`;
  try {
    const status = await checkHealth(address, { token, defaultDeadlineMs: 3_000 });
    if (status !== 'SERVING') throw new Error(`health says ${status}`);
    // The reflection service requires the token: a wrong one must be refused.
    const refused = await new Promise<grpc.status>((resolve) => {
      const client = new grpc.Client(address, grpc.credentials.createInsecure());
      const md = new grpc.Metadata();
      md.set('authorization', 'Bearer wrong');
      const call = client.makeBidiStreamRequest(
        '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo',
        (x: Buffer) => x,
        (x: Buffer) => x,
        md,
        { deadline: Date.now() + 3_000 },
      );
      call.on('error', (err: grpc.ServiceError) => {
        client.close();
        resolve(err.code);
      });
      call.on('data', () => undefined);
      call.end();
    });
    if (refused !== grpc.status.UNAUTHENTICATED) throw new Error(`wrong token got status ${refused}`);
    return `server on ${address}: health SERVING, wrong token refused (UNAUTHENTICATED)`;
  } finally {
    await server.shutdown(1_000);
  }
}

async function metricsScrape(): Promise<string> {
  const metrics = new ServiceMetrics('doctor');
  metrics.counter({ name: 'checks_total', help: 'Doctor checks run.' }).inc();
  const server = await startMetricsServer(metrics.registry);
  try {
    const body = await (await fetch(server.url)).text();
    if (!body.includes('spark_doctor_checks_total 1')) throw new Error('metric missing from the scrape');
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: body, encoding: 'utf8' });
    if (promtool.error) return `${server.url} scraped; promtool not installed (apt-get install prometheus)`;
    if (promtool.status !== 0) throw new Error(`promtool: ${promtool.stdout}${promtool.stderr}`);
    return `${server.url} scraped; promtool check metrics passed`;
  } finally {
    await server.close();
  }
}

async function nativeAddon(): Promise<string> {
  const modName = '@spark/kernels';
  try {
    // imported when the check runs, so that the other checks still run where the addon is not built; the
    // package loads the binary lazily, so the check loads it (and the libraries it links) itself
    const { addonPath, backendInfo, loadNative } = await import('@spark/kernels');
    const binding = loadNative();
    const b = backendInfo();
    const gemm = b.gemm === 'blas' ? `OpenBLAS${b.blasCore ? ` (${b.blasCore} kernels)` : ''}` : b.gemm;
    return `loaded ${addonPath()} (version ${binding.version()}); GEMM ${gemm}, ${b.threads} threads`;
  } catch (err) {
    throw new Error(`cannot load ${modName}: ${describeError(err)} (run \`npm run setup\`)`, { cause: err });
  }
}

const CUDA_STATUS = 'the CUDA backend is built but not yet verified on a GPU; models run on cpu';

/**
 * The CUDA driver, NVRTC and cuBLASLt (SPARK_CUDA_LIB_DIR, then the system path) and the devices the driver
 * lists. Not required: a machine without a GPU runs Spark on the CPU; the detail says what is missing.
 */
async function cudaCheck(): Promise<string> {
  const { cudaProbe } = await import('@spark/kernels');
  const p = cudaProbe();
  const libs = [p.driver, p.nvrtc, p.cublasLt];
  const found = libs.filter((l) => l.found !== null).map((l) => `${l.what}: ${l.found}`);
  const missing = libs.flatMap((l) => (l.error === null ? [] : [l.error]));
  if (p.driverError) missing.push(p.driverError);
  const devices = p.devices.map(
    (d) =>
      `cuda:${d.ordinal} ${d.name} (sm_${d.capability.replace('.', '')}, ${(d.totalMemoryBytes / 2 ** 30).toFixed(0)} GiB)`,
  );
  if (p.driver.found !== null && !p.driverError && devices.length === 0)
    missing.push('the driver lists no device');
  const versions = [
    p.driverVersion ? `driver supports CUDA ${p.driverVersion}` : '',
    p.nvrtcVersion ? `NVRTC ${p.nvrtcVersion}` : '',
  ].filter((v) => v !== '');
  const parts = [...versions, ...found, ...devices];
  if (missing.length) {
    throw new Error(
      `${missing.join('; ')}${parts.length ? ` (found: ${parts.join('; ')})` : ''}; ${CUDA_STATUS}`,
    );
  }
  return `${parts.join('; ')}; ${CUDA_STATUS}`;
}

export function checks(options: { redisUrl?: string }): Check[] {
  return [
    {
      name: 'node',
      required: true,
      run: async () => {
        const [major = 0, minor = 0] = process.versions.node.split('.').map(Number);
        if (major < 20 || (major === 20 && minor < 19))
          throw new Error(`Node ${process.versions.node} < 20.19`);
        return `Node ${process.versions.node}`;
      },
    },
    { name: 'native addon', required: false, run: nativeAddon },
    { name: 'cuda', required: false, run: cudaCheck },
    { name: 'redis + bullmq', required: true, run: () => redisRoundTrip(options.redisUrl) },
    { name: 'grpc', required: true, run: grpcRoundTrip },
    { name: 'metrics', required: true, run: metricsScrape },
  ];
}

/** Runs every check (each bounded in time) and returns the results in order. */
export async function runDoctor(options: { redisUrl?: string; timeoutMs?: number }): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const check of checks(options)) {
    try {
      const detail = await withTimeout(options.timeoutMs ?? 20_000, check.name, check.run());
      results.push({ name: check.name, ok: true, required: check.required, detail });
    } catch (err) {
      results.push({ name: check.name, ok: false, required: check.required, detail: describeError(err) });
    }
  }
  return results;
}

export function register(program: Command): void {
  program
    .command('doctor')
    .description(
      'check this machine can run Spark: toolchain, native addon, CUDA, Redis/BullMQ, gRPC, metrics',
    )
    .option('--json', 'print the results as JSON')
    .action(async (opts: { json?: boolean }) => {
      const redisUrl = process.env.REDIS_URL;
      const results = await runDoctor(redisUrl ? { redisUrl } : {});
      if (opts.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
      else {
        for (const r of results) {
          const mark = r.ok ? 'ok  ' : r.required ? 'FAIL' : 'warn';
          process.stdout.write(`${mark}  ${r.name.padEnd(15)} ${r.detail}\n`);
        }
      }
      if (results.some((r) => !r.ok && r.required)) {
        process.stderr.write('spark doctor: some required checks failed\n');
        process.exitCode = 1;
      }
    });
}
