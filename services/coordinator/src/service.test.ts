// JobService over real gRPC and a real Redis: SubmitJob validation (every bad field listed), Get/List/
// Cancel semantics and status codes, WatchJob replay + live + end, queueing beyond maxConcurrentJobs, and
// persistence across a coordinator restart. No worker services run here, so started jobs wait on their
// first rollout phase — which is all these tests need.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { problemsFromMetadata } from '@spark/runtime';
import { checkHealth, clientSetup, grpc } from '@spark/runtime/grpc';
import { createLogger } from '@spark/runtime/logging';
import {
  JobEventType,
  JobServiceClient,
  JobSpec,
  JobState,
  type JobEvent,
  type JobStatus,
} from '@spark/protocol';
import { expectUnchanged, testPrefix, testRedisUrl, until } from '@spark/runtime/testing';

import { coordinatorConfig, startCoordinator, type Coordinator } from './index.js';

const logger = createLogger({ service: 'coordinator-test', level: 'silent' });
const dataDir = mkdtempSync(join(tmpdir(), 'spark-coord-'));

async function start(
  prefix: string,
  maxConcurrentJobs = 1,
): Promise<{ c: Coordinator; client: JobServiceClient }> {
  const c = await startCoordinator(
    coordinatorConfig({
      localMode: true,
      redisUrl: await testRedisUrl(),
      redisPrefix: prefix,
      logLevel: 'silent',
      dataDir,
      schedulePollMs: 50,
      pollMs: 20,
      maxConcurrentJobs,
      cancelWaitMs: 5_000,
    }),
    { logger },
  );
  const setup = clientSetup({ token: null, defaultDeadlineMs: 10_000 });
  const client = new JobServiceClient(`127.0.0.1:${c.grpcPort}`, setup.credentials, setup.options);
  return { c, client };
}

function call<Req, Res>(
  client: JobServiceClient,
  method: 'submitJob' | 'getJob' | 'listJobs' | 'cancelJob' | 'generate',
  req: Req,
): Promise<Res> {
  return new Promise((resolve, reject) => {
    (client[method] as unknown as (r: Req, cb: (e: grpc.ServiceError | null, r: Res) => void) => void).call(
      client,
      req,
      (err, res) => (err ? reject(err) : resolve(res)),
    );
  });
}

const tinySpec = (name: string): JobSpec =>
  JobSpec.fromPartial({ name, trainSize: 64, evalSize: 4, batchSize: 4, groupSize: 2 });

async function submit(client: JobServiceClient, name: string): Promise<string> {
  const res = await call<unknown, { jobId: string; status: JobStatus }>(client, 'submitJob', {
    spec: tinySpec(name),
  });
  assert.equal(res.status.state, JobState.JOB_STATE_QUEUED);
  return res.jobId;
}

async function getState(client: JobServiceClient, jobId: string): Promise<JobState> {
  const res = await call<unknown, { status: JobStatus }>(client, 'getJob', { jobId });
  return res.status.state;
}

async function waitState(
  client: JobServiceClient,
  jobId: string,
  state: JobState,
  timeoutMs = 60_000,
): Promise<void> {
  let last: JobState | undefined;
  await until(async () => (last = await getState(client, jobId)) === state, {
    timeoutMs,
    message: `job ${jobId} to reach ${JobState[state]}`,
  }).catch((err: unknown) => {
    assert.fail(`${String(err)} (is ${last === undefined ? '?' : JobState[last]})`);
  });
}

function watch(
  client: JobServiceClient,
  jobId: string,
  afterSeq = 0,
): { events: JobEvent[]; ended: Promise<void> } {
  const events: JobEvent[] = [];
  const stream = client.watchJob({ jobId, afterSeq }, { deadline: Date.now() + 120_000 });
  const ended = new Promise<void>((resolve, reject) => {
    stream.on('data', (m: { event?: JobEvent }) => m.event && events.push(m.event));
    stream.on('end', () => resolve());
    stream.on('error', reject);
  });
  return { events, ended };
}

describe('JobService', () => {
  let c: Coordinator;
  let client: JobServiceClient;
  before(async () => {
    ({ c, client } = await start(testPrefix('coord-svc')));
  });
  after(async () => {
    client.close();
    await c.close();
  });

  it('rejects a bad spec with INVALID_ARGUMENT listing every bad field', async () => {
    const spec = JobSpec.fromPartial({
      name: 'x'.repeat(200),
      model: '/no/such/checkpoint',
      dataset: '/no/such/data.jsonl',
      groupSize: 1,
      learningRate: -1,
      clipEpsilon: 2,
      temperature: -0.5,
      topP: 1.5,
      lrSchedule: 'linear',
      warmupLrSchedule: 'step',
      templateVariant: 'medium',
      miniBatchSize: 8,
      microBatchSize: 16,
      datasetFormat: 'csv',
      minLrRatio: 3,
    });
    const err = await call(client, 'submitJob', { spec }).then(
      () => assert.fail('accepted'),
      (e: grpc.ServiceError) => e,
    );
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    const problems = problemsFromMetadata(err.metadata);
    const fields = problems.map((p) => p.split(':')[0]);
    for (const f of [
      'name',
      'model',
      'dataset',
      'groupSize',
      'learningRate',
      'clipEpsilon',
      'temperature',
      'topP',
      'lrSchedule',
      'warmupLrSchedule',
      'templateVariant',
      'microBatchSize',
      'datasetFormat',
      'minLrRatio',
    ]) {
      assert.ok(fields.includes(f), `problem for ${f} missing: ${problems.join(' | ')}`);
    }
    assert.equal(
      (await call<unknown, { jobs: JobStatus[] }>(client, 'listJobs', { limit: 0 })).jobs.length,
      0,
      'nothing stored',
    );
  });

  it('fills defaults, queues beyond maxConcurrentJobs, lists newest first, cancels with the right codes', async () => {
    const a = await submit(client, 'First Job!');
    assert.match(a, /^first-job-/);
    await waitState(client, a, JobState.JOB_STATE_RUNNING);
    const b = await submit(client, 'second');
    // the scheduler runs every 50 ms: b stays queued over many of its passes while a runs
    await expectUnchanged(() => getState(client, b), {
      forMs: 1_000,
      message: `job ${b} (queued while the cluster is busy)`,
    });
    assert.equal(await getState(client, b), JobState.JOB_STATE_QUEUED, 'waits while the cluster is busy');

    // /metrics: jobs by state, and the running job's waiting eval shards (4 problems × 10 eval items = 40
    // items / 8 per shard)
    const metricsUrl = `http://127.0.0.1:${c.metricsPort}/metrics`;
    const text = await until(
      async () => {
        const t = await (await fetch(metricsUrl)).text();
        return /queue_depth_tasks\{role="rollout"\} 5\b/.test(t) && t;
      },
      { timeoutMs: 60_000, intervalMs: 50, message: 'five waiting rollout (eval) shards in /metrics' },
    );
    assert.match(text, /spark_coordinator_jobs\{state="running"\} 1\b/);
    assert.match(text, /spark_coordinator_jobs\{state="queued"\} 1\b/);
    assert.match(text, /spark_coordinator_queue_depth_tasks\{role="rollout"\} 5\b/);
    assert.match(text, /spark_coordinator_queue_depth_tasks\{role="learn"\} 0\b/);
    assert.match(text, /spark_coordinator_policy_version_lag_versions 0\b/);

    const got = await call<unknown, { status: JobStatus }>(client, 'getJob', { jobId: a });
    assert.equal(got.status.spec?.model, 'tiny');
    assert.equal(got.status.spec?.clipEpsilon, 0.2);
    assert.equal(got.status.spec?.recycleReflection, true);
    assert.equal(got.status.spec?.checkpointDir, join(dataDir, a));

    const list = await call<unknown, { jobs: JobStatus[] }>(client, 'listJobs', { limit: 10 });
    assert.deepEqual(
      list.jobs.map((j) => j.jobId),
      [b, a],
    );
    await assert.rejects(
      call(client, 'getJob', { jobId: 'no-such-job' }),
      (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND,
    );
    await assert.rejects(
      call(client, 'getJob', { jobId: 'Bad Id!' }),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT,
    );
    await assert.rejects(
      call(client, 'listJobs', { limit: 100_000 }),
      (e: grpc.ServiceError) => e.code === grpc.status.INVALID_ARGUMENT,
    );

    const cb = await call<unknown, { status: JobStatus }>(client, 'cancelJob', { jobId: b });
    assert.equal(cb.status.state, JobState.JOB_STATE_CANCELLED, 'a queued job is cancelled at once');
    await assert.rejects(
      call(client, 'cancelJob', { jobId: b }),
      (e: grpc.ServiceError) => e.code === grpc.status.FAILED_PRECONDITION,
    );

    const d = await submit(client, 'third');
    const ca = await call<unknown, { status: JobStatus }>(client, 'cancelJob', { jobId: a });
    assert.equal(ca.status.state, JobState.JOB_STATE_CANCELLED, 'a running job stops at its next wait');
    await waitState(client, d, JobState.JOB_STATE_RUNNING);
    await call(client, 'cancelJob', { jobId: d });
  });

  it('fails a job whose dataset cannot be used, with the reason, and moves on', async () => {
    const file = join(dataDir, 'tiny.jsonl');
    writeFileSync(file, '{"question":"1+1?","answer":"2"}\n{"question":"2+2?","answer":"4"}\n');
    const res = await call<unknown, { jobId: string }>(client, 'submitJob', {
      spec: JobSpec.fromPartial({ name: 'bad-data', dataset: file, batchSize: 4, groupSize: 2 }),
    });
    await waitState(client, res.jobId, JobState.JOB_STATE_FAILED);
    const got = await call<unknown, { status: JobStatus }>(client, 'getJob', { jobId: res.jobId });
    assert.match(got.status.message, /too few for batchSize 4/);
    assert.equal(got.status.spec?.dataset, file);
  });

  it('WatchJob replays, follows live events and ends with the job', async () => {
    const id = await submit(client, 'watched');
    await waitState(client, id, JobState.JOB_STATE_RUNNING);
    const w = watch(client, id);
    await until(() => w.events.length >= 2, { message: 'the watch to replay the first two events' });
    assert.deepEqual(
      w.events.map((e) => e.state),
      [JobState.JOB_STATE_QUEUED, JobState.JOB_STATE_RUNNING],
      'replayed',
    );
    await call(client, 'cancelJob', { jobId: id });
    await w.ended;
    const last = w.events.at(-1);
    assert.equal(last?.type, JobEventType.JOB_EVENT_TYPE_STATE);
    assert.equal(last?.state, JobState.JOB_STATE_CANCELLED, 'live event, then the stream ends');
    assert.deepEqual(
      w.events.map((e) => e.seq),
      w.events.map((_, i) => i + 1),
      'seq is 1, 2, 3, …',
    );
    const replay = watch(client, id, 1);
    await replay.ended;
    assert.deepEqual(
      replay.events.map((e) => e.seq),
      w.events.slice(1).map((e) => e.seq),
      'afterSeq skips what the watcher has seen; an ended job ends the stream',
    );
    await assert.rejects(
      new Promise((resolve, reject) => {
        const s = client.watchJob({ jobId: 'nope-nope', afterSeq: 0 });
        s.on('data', () => undefined);
        s.on('end', resolve);
        s.on('error', reject);
      }),
      (e: grpc.ServiceError) => e.code === grpc.status.NOT_FOUND,
    );
  });
});

describe('coordinator restart', () => {
  it('keeps every job, resumes RUNNING ones and still starts QUEUED ones', async () => {
    const prefix = testPrefix('coord-restart');
    let { c, client } = await start(prefix);
    const a = await submit(client, 'resume-me');
    await waitState(client, a, JobState.JOB_STATE_RUNNING);
    const b = await submit(client, 'still-queued');
    client.close();
    await c.close();

    ({ c, client } = await start(prefix));
    try {
      assert.equal(await getState(client, a), JobState.JOB_STATE_RUNNING);
      assert.deepEqual(c.runningJobs(), [a], 'the running job is driven again');
      assert.equal(await getState(client, b), JobState.JOB_STATE_QUEUED);
      await call(client, 'cancelJob', { jobId: a });
      await waitState(client, b, JobState.JOB_STATE_RUNNING);
      await call(client, 'cancelJob', { jobId: b });
      const list = await call<unknown, { jobs: JobStatus[] }>(client, 'listJobs', { limit: 0 });
      assert.deepEqual(
        list.jobs.map((j) => [j.jobId, j.state]),
        [
          [b, JobState.JOB_STATE_CANCELLED],
          [a, JobState.JOB_STATE_CANCELLED],
        ],
      );
    } finally {
      client.close();
      await c.close();
    }
  });
});

describe('authentication outside local mode', () => {
  it('refuses calls without the bearer token and serves those with it', async () => {
    const token = 'a-test-token-of-32-characters-xx';
    const c = await startCoordinator(
      coordinatorConfig({
        localMode: false,
        authToken: token,
        redisUrl: await testRedisUrl(),
        redisPrefix: testPrefix('coord-auth'),
        logLevel: 'silent',
        dataDir,
      }),
      { logger },
    );
    const anon = clientSetup({ token: null, defaultDeadlineMs: 5_000 });
    const authed = clientSetup({ token, defaultDeadlineMs: 5_000 });
    const a = new JobServiceClient(`127.0.0.1:${c.grpcPort}`, anon.credentials, anon.options);
    const b = new JobServiceClient(`127.0.0.1:${c.grpcPort}`, authed.credentials, authed.options);
    try {
      await assert.rejects(
        call(a, 'listJobs', { limit: 0 }),
        (e: grpc.ServiceError) => e.code === grpc.status.UNAUTHENTICATED,
      );
      const res = await call<unknown, { jobs: JobStatus[] }>(b, 'listJobs', { limit: 0 });
      assert.deepEqual(res.jobs, []);
    } finally {
      a.close();
      b.close();
      await c.close();
    }
  });
});

describe('per-user access: jobs have owners', () => {
  const tokens = {
    alice: 'alice-token-0123456789abcdef',
    bob: 'bob-token-0123456789abcdef',
    ops: 'ops-token-0123456789abcdef',
    svc: 'svc-token-0123456789abcdef',
  };
  let c: Coordinator;
  const clients: Record<string, JobServiceClient> = {};

  before(async () => {
    const file = join(dataDir, 'tokens.yaml');
    writeFileSync(
      file,
      [
        'principals:',
        `  - { name: alice, roles: [researcher], tokens: ["${tokens.alice}"] }`,
        `  - { name: bob, roles: [researcher], tokens: ["${tokens.bob}"] }`,
        `  - { name: ops, roles: [operator], tokens: ["${tokens.ops}"] }`,
        `  - { name: rollout, roles: [service], tokens: ["${tokens.svc}"] }`,
        '',
      ].join('\n'),
    );
    c = await startCoordinator(
      coordinatorConfig({
        localMode: false,
        authTokensFile: file,
        redisUrl: await testRedisUrl(),
        redisPrefix: testPrefix('coord-owners'),
        logLevel: 'silent',
        dataDir,
        schedulePollMs: 50,
        pollMs: 20,
        maxConcurrentJobs: 1,
        cancelWaitMs: 5_000,
        generatePickupMs: 200,
      }),
      { logger },
    );
    for (const [who, token] of Object.entries({ ...tokens, anon: null })) {
      const setup = clientSetup({ token, defaultDeadlineMs: 10_000 });
      clients[who] = new JobServiceClient(`127.0.0.1:${c.grpcPort}`, setup.credentials, setup.options);
    }
  });
  after(async () => {
    for (const cl of Object.values(clients)) cl.close();
    await c.close();
  });

  const denied = (method: string, jobId: string) => (e: grpc.ServiceError) => {
    assert.equal(e.code, grpc.status.PERMISSION_DENIED, e.details);
    assert.equal(e.details, `permission denied: ${method} of job ${jobId}: it is not a job of bob`);
    return true;
  };

  it('records the submitter as owner; a researcher lists, gets, watches and cancels only its own', async () => {
    const a = await submit(clients.alice!, 'alice-job');
    const b = await submit(clients.bob!, 'bob-job');
    const got = await call<unknown, { status: JobStatus }>(clients.alice!, 'getJob', { jobId: a });
    assert.equal(got.status.owner, 'alice');

    const listOf = async (who: string) =>
      (await call<unknown, { jobs: JobStatus[] }>(clients[who]!, 'listJobs', { limit: 0 })).jobs.map(
        (j) => `${j.owner}:${j.jobId}`,
      );
    assert.deepEqual(await listOf('alice'), [`alice:${a}`]);
    assert.deepEqual(await listOf('bob'), [`bob:${b}`]);
    assert.deepEqual(await listOf('ops'), [`bob:${b}`, `alice:${a}`], 'an operator sees every job');

    // bob may not touch alice's job, and the refusal names only the method and the job
    await assert.rejects(call(clients.bob!, 'getJob', { jobId: a }), denied('GetJob', a));
    await assert.rejects(call(clients.bob!, 'cancelJob', { jobId: a }), denied('CancelJob', a));
    await assert.rejects(watch(clients.bob!, a).ended, denied('WatchJob', a));
    assert.notEqual(await getState(clients.alice!, a), JobState.JOB_STATE_CANCELLED);

    // alice cancels her own; the operator cancels bob's
    await call(clients.alice!, 'cancelJob', { jobId: a });
    await waitState(clients.alice!, a, JobState.JOB_STATE_CANCELLED);
    const w = watch(clients.ops!, b);
    await call(clients.ops!, 'cancelJob', { jobId: b });
    await w.ended;
    assert.ok(w.events.some((e) => e.state === JobState.JOB_STATE_CANCELLED));
  });

  it("Generate: a researcher reads only its own jobs' checkpoints; a directory path needs an operator", async () => {
    const a = await submit(clients.alice!, 'alice-eval');
    const gen = (who: string, checkpoint: string) =>
      call(clients[who]!, 'generate', { checkpoint, prompts: ['1+1='], maxNewTokens: 4 });
    await assert.rejects(gen('bob', `job:${a}`), denied('Generate', a));
    await assert.rejects(
      gen('bob', '/data/checkpoints/x/step-1'),
      (e: grpc.ServiceError) =>
        e.code === grpc.status.PERMISSION_DENIED &&
        /Generate of a checkpoint path needs role operator; bob may name its own jobs' checkpoints/.test(
          e.details,
        ),
    );
    // Past the access check no rollout worker picks the request up here: UNAVAILABLE, not PERMISSION_DENIED.
    const notDenied = (e: grpc.ServiceError) => e.code !== grpc.status.PERMISSION_DENIED;
    await assert.rejects(gen('alice', `job:${a}`), notDenied);
    await assert.rejects(gen('ops', '/data/checkpoints/x/step-1'), notDenied);
    await call(clients.alice!, 'cancelJob', { jobId: a });
  });

  it('refuses unauthenticated calls and the service role, and leaves health anonymous', async () => {
    await assert.rejects(
      call(clients.anon!, 'listJobs', { limit: 0 }),
      (e: grpc.ServiceError) =>
        e.code === grpc.status.UNAUTHENTICATED && /missing bearer token/.test(e.details),
    );
    await assert.rejects(
      call(clients.svc!, 'listJobs', { limit: 0 }),
      (e: grpc.ServiceError) =>
        e.code === grpc.status.PERMISSION_DENIED &&
        /JobService\/ListJobs needs role researcher or operator; rollout has service/.test(e.details),
    );
    assert.equal(
      await checkHealth(`127.0.0.1:${c.grpcPort}`, { token: null, defaultDeadlineMs: 5_000 }),
      'SERVING',
    );
  });
});
