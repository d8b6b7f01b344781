// Evaluation through a cluster (`spark eval --address`, JobService.Generate): a local cluster of a
// coordinator and two rollout worker processes (real Redis, real gRPC, the real native addon) and a tiny
// checkpoint. Greedy outputs through the cluster equal the in-process ones record for record (answers,
// self-reflection and the reward benchmark); the work is spread over both workers (their metrics and the
// summary's per-worker counts); a bad checkpoint path is a clear error with a non-zero exit; malformed
// input is reported as in-process. Separately, an in-process coordinator answers UNAVAILABLE after its
// pick-up bound when no rollout worker serves the queue, but keeps tasks queued behind a busy worker
// waiting past it, and answers bad requests INVALID_ARGUMENT with every problem listed.
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { grpc } from '@spark/runtime/grpc';
import { createLogger } from '@spark/runtime/logging';
import { testPrefix, testRedisUrl } from '@spark/runtime/testing';
import { coordinatorConfig, startCoordinator, type Coordinator } from '@spark/coordinator';
import { Model } from '@spark/kernels';
import { rolloutConfig, startRollout, type RolloutService } from '@spark/rollout';

import { runSpark, type SparkRun } from '@spark/cli/testing';
import { ClusterCallError, JobClient } from '@spark/cli/client';
import { startLocalCluster, type LocalCluster } from '@spark/cli/launcher';
import { makeTinyCheckpoint } from '@spark/method/checkpoint';

function spark(args: string[], cwd?: string): Promise<SparkRun> {
  return runSpark(args, {}, 180_000, cwd);
}

const readText = (path: string): Promise<string> => readFile(path, 'utf8');
const readJson = async <T>(path: string): Promise<T> => JSON.parse(await readText(path)) as T;

/** The value of a counter in a Prometheus exposition (0 when absent). */
async function counter(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

const FAST = ['--max-new-tokens', '40', '--batch', '2'];

describe('spark eval --address on a 2-worker cluster', () => {
  let dir: string;
  let ckpt: string;
  let cluster: LocalCluster;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-cluster-eval-'));
    ckpt = join(dir, 'ckpt');
    const [, c] = await Promise.all([
      makeTinyCheckpoint(ckpt, 60),
      startLocalCluster({
        dataDir: join(dir, 'cluster'),
        redisUrl: await testRedisUrl(),
        prefix: testPrefix('cluster-eval'),
        services: ['coordinator', 'rollout'],
        rolloutWorkers: 2,
        env: { SPARK_LOG_LEVEL: 'warn' },
      }),
    ]);
    cluster = c;
  });
  after(async () => {
    await cluster?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const rolloutPorts = (): number[] =>
    cluster.children.filter((c) => c.service === 'rollout').map((c) => c.ready.metricsPort as number);

  it('gives the in-process results record for record, spread over both workers', async () => {
    const local = join(dir, 'local');
    const remote = join(dir, 'remote');
    const before = await Promise.all(
      rolloutPorts().map((p) => counter(p, 'spark_rollout_eval_prompts_total')),
    );
    // the cluster run passes the checkpoint as a relative path: the CLI resolves it for the workers
    const [a, b] = await Promise.all([
      spark(['eval', ckpt, '--count', '16', '--out', local, ...FAST]),
      spark(
        ['eval', 'ckpt', '--count', '16', '--out', remote, '--address', cluster.coordinatorAddress, ...FAST],
        dir,
      ),
    ]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.equal(await readText(join(remote, 'results.jsonl')), await readText(join(local, 'results.jsonl')));
    assert.match(b.stdout, /generated on 2 rollout worker\(s\)/);
    const summary = await readJson<{
      answers: unknown;
      generation: { prompts: number; workers: Record<string, number>; checkpointDir: string };
      settings: { cluster?: { address: string; inFlight: number } };
    }>(join(remote, 'summary.json'));
    const localSummary = await readJson<{ answers: unknown }>(join(local, 'summary.json'));
    assert.deepEqual(summary.answers, localSummary.answers);
    assert.equal(summary.generation.prompts, 16);
    assert.equal(summary.generation.checkpointDir, ckpt);
    assert.deepEqual(summary.settings.cluster, { address: cluster.coordinatorAddress, inFlight: 4 });
    const perWorker = Object.values(summary.generation.workers);
    assert.equal(perWorker.length, 2, JSON.stringify(summary.generation.workers));
    assert.ok(perWorker.every((n) => n > 0));
    // each worker's own metrics saw its share
    const afterCounts = await Promise.all(
      rolloutPorts().map((p) => counter(p, 'spark_rollout_eval_prompts_total')),
    );
    const deltas = afterCounts.map((x, i) => x - (before[i] ?? 0));
    assert.ok(
      deltas.every((d) => d > 0),
      `both workers generated: ${deltas.join(', ')}`,
    );
    assert.equal(
      deltas.reduce((s, d) => s + d, 0),
      16,
    );
  });

  it('self-reflection and the reward benchmark through the cluster equal the in-process runs', async () => {
    const runs = await Promise.all(
      // the judge's own-mistake items sample at temperature 1.0 in-process but greedily on a cluster: off here
      [['--reflect'], ['--judge', '--own-draws', '0']].flatMap((mode) =>
        [[], ['--address', cluster.coordinatorAddress]].map((where) => {
          const out = join(dir, `${mode[0]?.slice(2)}-${where.length ? 'remote' : 'local'}`);
          return spark(['eval', ckpt, '--count', '6', ...mode, '--out', out, ...where, ...FAST]).then(
            (r) => ({ r, out }),
          );
        }),
      ),
    );
    for (const { r } of runs) assert.equal(r.code, 0, r.stderr);
    {
      const l = runs[0] as { out: string };
      const c = runs[1] as { out: string };
      assert.equal(
        await readText(join(c.out, 'results.jsonl')),
        await readText(join(l.out, 'results.jsonl')),
      );
    }
    {
      // judge records are equal but for the teacher-forced margin, which only in-process has (log-probs)
      const rows = async (r: { out: string }) =>
        (await readText(join(r.out, 'results.jsonl')))
          .split('\n')
          .filter((x) => x !== '')
          .map((x) => JSON.parse(x) as Record<string, unknown>);
      const l = await rows(runs[2] as { out: string });
      const c = await rows(runs[3] as { out: string });
      assert.ok(l.length > 0 && l.every((x) => typeof x.margin === 'number'));
      assert.ok(c.every((x) => !('margin' in x)));
      assert.deepEqual(
        c,
        l.map(({ margin: _margin, ...rest }) => rest),
      );
    }
    const refl = await readJson<{ reflection: { modelCalls: number }; generation: { prompts: number } }>(
      join((runs[1] as { out: string }).out, 'summary.json'),
    );
    assert.equal(refl.generation.prompts, refl.reflection.modelCalls);
  });

  it('a bad checkpoint path is a clear error with a non-zero exit; malformed input is reported', async () => {
    const file = join(dir, 'mixed.jsonl');
    await writeFile(
      file,
      [
        JSON.stringify({ dataset: 'alpha', problem: '2+3=?', answer: '5', image_path: '' }),
        '{"dataset": "alpha", "problem": "oops"',
        JSON.stringify({ dataset: 'beta', problem: 'What is shown?', answer: '1', image_path: 'img/1.png' }),
        JSON.stringify({ dataset: 'beta', problem: '6*2=?', answer: '12' }),
      ].join('\n') + '\n',
    );
    const addr = ['--address', cluster.coordinatorAddress];
    const [missing, notModel, mixed, tooBig] = await Promise.all([
      spark(['eval', join(dir, 'no-such-checkpoint'), '--count', '2', ...addr]),
      spark(['eval', dir, '--count', '2', ...addr]), // a directory, but no checkpoint in it
      spark(['eval', ckpt, file, '--out', join(dir, 'mixed'), ...addr, ...FAST]),
      spark(['eval', ckpt, '--count', '2', '--batch', '300', ...addr]),
    ]);
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /^spark: generation: cannot load checkpoint \S*no-such-checkpoint: no config\.json/m,
    );
    assert.equal(notModel.code, 1);
    assert.match(notModel.stderr, /cannot load checkpoint/);
    assert.equal(mixed.code, 0, mixed.stderr);
    assert.match(mixed.stderr, /skipped 2 line\(s\) \(1 with images/);
    assert.match(mixed.stderr, /mixed\.jsonl:2: invalid JSON/);
    const s = await readJson<{ input: { skipped: number }; answers: { count: number } }>(
      join(dir, 'mixed', 'summary.json'),
    );
    assert.equal(s.input.skipped, 2);
    assert.equal(s.answers.count, 2);
    assert.equal(tooBig.code, 1);
    assert.match(tooBig.stderr, /--batch must be at most 256 with --address/);
  });
});

describe('JobService.Generate: pick-up bound and request validation', () => {
  let coordinator: Coordinator;
  let client: JobClient;
  let rollout: RolloutService | null = null;
  let prefix: string;
  let dir: string;
  before(async () => {
    prefix = testPrefix('generate-pickup');
    dir = await mkdtemp(join(tmpdir(), 'spark-gen-'));
    coordinator = await startCoordinator(
      coordinatorConfig({
        localMode: true,
        redisUrl: await testRedisUrl(),
        redisPrefix: prefix,
        logLevel: 'silent',
        dataDir: dir,
        generatePickupMs: 600,
      }),
      { logger: createLogger({ service: 'coordinator-test', level: 'silent' }) },
    );
    client = new JobClient({ address: `127.0.0.1:${coordinator.grpcPort}`, token: null });
  });
  after(async () => {
    client?.close();
    await rollout?.close();
    await coordinator?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('answers UNAVAILABLE when no rollout worker serves the queue', async () => {
    // at the 0.6 s pick-up bound, not at the call's 10 s deadline: the status (UNAVAILABLE, not
    // DEADLINE_EXCEEDED) and the message say which bound ended the call, with no wall-clock assertion
    await assert.rejects(
      client.generate({ checkpoint: '/tmp/x', prompts: ['1+1=?'], maxNewTokens: 8, tokenizer: '' }, 10_000),
      (err: unknown) =>
        err instanceof ClusterCallError &&
        err.code === grpc.status.UNAVAILABLE &&
        /^generation: no rollout worker took the generation task within 0\.6 s: are rollout workers running/.test(
          err.message,
        ),
    );
  });

  it('answers INVALID_ARGUMENT listing every problem of a bad request', async () => {
    await assert.rejects(
      client.generate(
        {
          checkpoint: 'relative/ckpt',
          prompts: Array.from({ length: 257 }, () => 'x'),
          maxNewTokens: 5_000,
          tokenizer: '',
        },
        10_000,
      ),
      (err: unknown) => {
        assert.ok(err instanceof ClusterCallError);
        assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
        assert.equal(err.problems.length, 3, err.problems.join('\n'));
        assert.match(err.problems.join('\n'), /checkpoint: must be an absolute path/);
        assert.match(err.problems.join('\n'), /prompts: at most 256 per request, got 257/);
        assert.match(err.problems.join('\n'), /maxNewTokens: at most 4096, got 5000/);
        return true;
      },
    );
    await assert.rejects(
      client.generate(
        { checkpoint: '/tmp/x', prompts: ['y'.repeat(70_000)], maxNewTokens: 0, tokenizer: '' },
        10_000,
      ),
      /prompts\[0\]: at most 65536 characters, got 70000/,
    );
  });

  it('keeps a task waiting while the worker is busy with earlier ones, past the pick-up bound', async () => {
    const ckpt = join(dir, 'random');
    const m = await Model.create('tiny', 3);
    await m.save(ckpt);
    m.free();
    // a second coordinator on the same queue with a short pick-up bound, and one rollout worker
    const quick = await startCoordinator(
      coordinatorConfig({
        localMode: true,
        redisUrl: await testRedisUrl(),
        redisPrefix: prefix,
        logLevel: 'silent',
        dataDir: dir,
        generatePickupMs: 100,
      }),
      { logger: createLogger({ service: 'coordinator-test', level: 'silent' }) },
    );
    const quickClient = new JobClient({ address: `127.0.0.1:${quick.grpcPort}`, token: null });
    rollout = await startRollout(
      rolloutConfig({
        redisUrl: await testRedisUrl(),
        redisPrefix: prefix,
        localMode: true,
        logLevel: 'silent',
      }),
    );
    try {
      const prompts = Array.from({ length: 256 }, (_, i) => `${i}+${i}=?`);
      const latencies: number[] = [];
      const t0 = Date.now();
      const answers = await Promise.all(
        Array.from({ length: 10 }, () =>
          quickClient
            .generate({ checkpoint: ckpt, prompts, maxNewTokens: 96, tokenizer: '' }, 120_000)
            .then((a) => (latencies.push((Date.now() - t0) / 1000), a)),
        ),
      );
      // one worker, one task at a time: the last task waited several times the 0.1 s pick-up bound
      const last = Math.max(...latencies);
      assert.ok(last > 0.3, `took ${last} s; the test needs tasks slower than the pick-up bound`);
      for (const a of answers) {
        assert.equal(a.outputs.length, 256);
        assert.equal(a.worker, answers[0]?.worker);
        assert.deepEqual(a.outputs, answers[0]?.outputs);
      }
    } finally {
      quickClient.close();
      await quick.close();
    }
  });
});
