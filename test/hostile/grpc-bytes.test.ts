// Hostile bytes on the wire: a raw grpc-js client with a pass-through serializer sends random, mutated
// (truncated, bit-flipped, spliced) and oversized request bytes to every method of every service of a
// coordinator and a learner running as their own processes (JobService incl. the UploadDataset client stream
// and the WatchJob server stream, PolicyService, grpc.health.v1.Health): every call ends within a bound with a
// status a client can act on (never INTERNAL or UNKNOWN, which would be a server bug, and never a hang), no
// process dies, and each server still answers a valid call afterwards. Calls without the token get
// UNAUTHENTICATED before any decoding.
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import fc from 'fast-check';

import { startLocalCluster, type LocalCluster } from '@spark/cli/launcher';
import {
  CancelJobRequest,
  GenerateRequest,
  GetJobRequest,
  GetPolicyRequest,
  JobSpec,
  ListJobsRequest,
  SubmitJobRequest,
  UploadDatasetRequest,
  WatchJobRequest,
} from '@spark/protocol';
import { grpc } from '@spark/runtime/grpc';

const TOKEN = 'hostile-bytes-token-0123456789';
const MAX_MESSAGE_BYTES = 64 * 1024;
/** Each call must end by then (the client deadline is later, so a hang shows as DEADLINE_EXCEEDED). */
const CALL_BOUND_MS = 15_000;
const RUNS = Number(process.env.SPARK_FUZZ_RUNS ?? 25);

type Kind = 'unary' | 'server-stream' | 'client-stream';
interface Method {
  path: string;
  kind: Kind;
  /** A valid request, encoded: the seed the mutations start from. */
  seed: Uint8Array;
  /** Statuses that are a fair answer to a request that decodes to something (besides INVALID_ARGUMENT). */
  also: readonly grpc.status[];
}

const S = grpc.status;
const JOB_ID = 'hostile-00000000';
/** grpc.health.v1.HealthCheckRequest { service = "spark.v1.JobService" }, by hand. */
const healthSeed = (() => {
  const name = Buffer.from('spark.v1.JobService');
  return Buffer.concat([Buffer.from([0x0a, name.length]), name]);
})();

const JOB_METHODS: Method[] = [
  {
    path: '/spark.v1.JobService/SubmitJob',
    kind: 'unary',
    seed: SubmitJobRequest.encode({
      spec: JobSpec.fromPartial({ name: 'seed', trainSize: 64, evalSize: 4, batchSize: 4, groupSize: 2 }),
    }).finish(),
    // a random message can decode to a valid spec: it is queued (OK) until the queue is full
    also: [S.OK, S.RESOURCE_EXHAUSTED, S.NOT_FOUND],
  },
  {
    path: '/spark.v1.JobService/GetJob',
    kind: 'unary',
    seed: GetJobRequest.encode({ jobId: JOB_ID }).finish(),
    also: [S.NOT_FOUND],
  },
  {
    path: '/spark.v1.JobService/ListJobs',
    kind: 'unary',
    seed: ListJobsRequest.encode(ListJobsRequest.fromPartial({ limit: 5 })).finish(),
    also: [S.OK],
  },
  {
    path: '/spark.v1.JobService/CancelJob',
    kind: 'unary',
    seed: CancelJobRequest.encode({ jobId: JOB_ID }).finish(),
    also: [S.NOT_FOUND, S.FAILED_PRECONDITION, S.OK],
  },
  {
    path: '/spark.v1.JobService/WatchJob',
    kind: 'server-stream',
    seed: WatchJobRequest.encode({ jobId: JOB_ID, afterSeq: 0 }).finish(),
    // a decoded id of a queued job follows it until our deadline: bounded, and cancelled by the test
    also: [S.NOT_FOUND, S.OK, S.CANCELLED],
  },
  {
    path: '/spark.v1.JobService/Generate',
    kind: 'unary',
    seed: GenerateRequest.encode(
      GenerateRequest.fromPartial({ checkpoint: 'tiny', prompts: ['1+1?'], maxNewTokens: 4 }),
    ).finish(),
    // no rollout worker runs here: a valid request waits generatePickupMs, then UNAVAILABLE
    also: [S.UNAVAILABLE, S.NOT_FOUND, S.RESOURCE_EXHAUSTED],
  },
  {
    path: '/spark.v1.JobService/UploadDataset',
    kind: 'client-stream',
    seed: UploadDatasetRequest.encode(
      UploadDatasetRequest.fromPartial({
        part: { $case: 'header', value: { name: 'seed.jsonl', size: 10, sha256: '0'.repeat(64) } },
      }),
    ).finish(),
    also: [S.OK, S.RESOURCE_EXHAUSTED],
  },
  { path: '/grpc.health.v1.Health/Check', kind: 'unary', seed: healthSeed, also: [S.OK, S.NOT_FOUND] },
  {
    path: '/grpc.health.v1.Health/Watch',
    kind: 'server-stream',
    seed: healthSeed,
    also: [S.OK, S.CANCELLED, S.NOT_FOUND],
  },
];

const POLICY_METHODS: Method[] = [
  {
    path: '/spark.v1.PolicyService/GetPolicy',
    kind: 'server-stream',
    seed: GetPolicyRequest.encode({ jobId: JOB_ID, version: 1 }).finish(),
    also: [S.NOT_FOUND, S.FAILED_PRECONDITION],
  },
  { path: '/grpc.health.v1.Health/Check', kind: 'unary', seed: healthSeed, also: [S.OK, S.NOT_FOUND] },
];

const pass = (b: Buffer): Buffer => b;

interface Outcome {
  code: grpc.status;
  details: string;
  ms: number;
}

/** One raw call; streams are read to their end (server streams are cancelled after the first message). */
function rawCall(client: grpc.Client, m: Method, messages: Buffer[], token: string | null): Promise<Outcome> {
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  const started = Date.now();
  const deadline = Date.now() + CALL_BOUND_MS + 5_000;
  return new Promise((resolve) => {
    const done = (code: grpc.status, details: string): void =>
      resolve({ code, details, ms: Date.now() - started });
    const onStatus = (err: grpc.ServiceError | null): void =>
      err ? done(err.code, err.details) : done(S.OK, '');
    if (m.kind === 'unary') {
      client.makeUnaryRequest(m.path, pass, pass, messages[0] ?? Buffer.alloc(0), md, { deadline }, onStatus);
    } else if (m.kind === 'client-stream') {
      const call = client.makeClientStreamRequest(m.path, pass, pass, md, { deadline }, onStatus);
      for (const msg of messages) call.write(msg);
      call.end();
    } else {
      const call = client.makeServerStreamRequest(m.path, pass, pass, messages[0] ?? Buffer.alloc(0), md, {
        deadline,
      });
      let settled = false;
      call.on('data', () => {
        // a valid stream answered: that is a fair outcome; stop it
        if (!settled) call.cancel();
      });
      call.on('status', (st: grpc.StatusObject) => {
        if (settled) return;
        settled = true;
        done(st.code, st.details);
      });
      call.on('error', () => undefined);
    }
  });
}

/** Random bytes, or the method's valid seed truncated, bit-flipped, spliced with random bytes or repeated. */
const hostileBytes = (seed: Uint8Array): fc.Arbitrary<Buffer> =>
  fc
    .oneof(
      fc.uint8Array({ maxLength: 300 }),
      fc.nat({ max: Math.max(0, seed.length - 1) }).map((n) => seed.slice(0, n)),
      fc
        .array(fc.tuple(fc.nat({ max: Math.max(0, seed.length - 1) }), fc.integer({ min: 0, max: 7 })), {
          minLength: 1,
          maxLength: 4,
        })
        .map((flips) => {
          const out = Uint8Array.from(seed);
          for (const [at, bit] of flips) if (out.length) out[at % out.length]! ^= 1 << bit;
          return out;
        }),
      fc
        .tuple(fc.nat({ max: seed.length }), fc.uint8Array({ minLength: 1, maxLength: 64 }))
        .map(([at, junk]) => Uint8Array.from([...seed.slice(0, at), ...junk, ...seed.slice(at)])),
      // a length-delimited field claiming far more bytes than follow
      fc.constant(Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x41])),
      // deep nesting of an unknown group / length-delimited field
      fc.integer({ min: 1, max: 2_000 }).map((n) => Uint8Array.from(Array.from({ length: n }, () => 0x0b))),
    )
    .map((u) => Buffer.from(u));

const FAIR = (m: Method): readonly grpc.status[] => [S.INVALID_ARGUMENT, ...m.also];

async function assertServes(client: grpc.Client): Promise<void> {
  const out = await rawCall(
    client,
    { path: '/grpc.health.v1.Health/Check', kind: 'unary', seed: healthSeed, also: [] },
    [Buffer.alloc(0)],
    TOKEN,
  );
  assert.equal(out.code, S.OK, `health check after hostile input: ${out.details}`);
}

describe('hostile request bytes on every gRPC method', () => {
  let cluster: LocalCluster;
  let coordinator: grpc.Client;
  let learner: grpc.Client;
  let died: string | null = null;

  before(async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spark-hostile-'));
    cluster = await startLocalCluster({
      dataDir: join(dir, 'cluster'),
      prefix: 'hostile',
      services: ['coordinator', 'learner'],
      env: {
        SPARK_LOCAL_MODE: 'false',
        SPARK_AUTH_TOKEN: TOKEN,
        SPARK_GRPC_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES),
        SPARK_GENERATE_PICKUP_MS: '300',
        SPARK_MAX_QUEUED_JOBS: '20',
      },
    });
    void cluster.failure.then((f) => (died = `${f.name} exited (${f.code ?? f.signal}): ${f.logTail}`));
    coordinator = new grpc.Client(cluster.coordinatorAddress, grpc.credentials.createInsecure());
    learner = new grpc.Client(cluster.learnerAddress, grpc.credentials.createInsecure());
  });
  after(async () => {
    coordinator?.close();
    learner?.close();
    await cluster?.stop();
  });

  const fuzz = (server: () => grpc.Client, methods: Method[], label: string): void => {
    for (const m of methods) {
      it(`${label} ${m.path}: random and mutated bytes end with a fair status, in bounded time`, async () => {
        const seen = new Map<string, number>();
        await fc.assert(
          fc.asyncProperty(
            fc.array(hostileBytes(m.seed), { minLength: 1, maxLength: m.kind === 'client-stream' ? 4 : 1 }),
            async (messages) => {
              const out = await rawCall(server(), m, messages, TOKEN);
              const name = S[out.code] ?? String(out.code);
              seen.set(name, (seen.get(name) ?? 0) + 1);
              assert.ok(
                FAIR(m).includes(out.code),
                `${m.path} answered ${name} (${out.details}) to ${messages.map((b) => b.toString('hex').slice(0, 80)).join(' | ')}`,
              );
              assert.ok(out.ms < CALL_BOUND_MS, `${m.path} took ${out.ms} ms`);
              if (out.code === S.INVALID_ARGUMENT) assert.ok(out.details.length > 0, 'a reason is given');
              assert.equal(died, null);
            },
          ),
          { numRuns: RUNS, seed: Number(process.env.SPARK_FUZZ_SEED ?? 20261206) },
        );
        assert.ok(
          (seen.get('INVALID_ARGUMENT') ?? 0) > 0,
          `some input was refused: ${JSON.stringify([...seen])}`,
        );
        await assertServes(server());
      });
    }
  };
  fuzz(() => coordinator, JOB_METHODS, 'coordinator');
  fuzz(() => learner, POLICY_METHODS, 'learner');

  it('oversized messages get RESOURCE_EXHAUSTED on every method; both servers still serve', async () => {
    const big = Buffer.alloc(MAX_MESSAGE_BYTES + 1, 0x41);
    for (const [client, methods] of [
      [coordinator, JOB_METHODS],
      [learner, POLICY_METHODS],
    ] as const) {
      for (const m of methods) {
        const out = await rawCall(client, m, [big], TOKEN);
        assert.equal(out.code, S.RESOURCE_EXHAUSTED, `${m.path}: ${S[out.code]} ${out.details}`);
      }
      await assertServes(client);
    }
    assert.equal(died, null);
  });

  it('calls without the token get UNAUTHENTICATED before their bytes are read (health stays open)', async () => {
    for (const [client, methods] of [
      [coordinator, JOB_METHODS],
      [learner, POLICY_METHODS],
    ] as const) {
      for (const m of methods.filter((x) => !x.path.startsWith('/grpc.health'))) {
        const out = await rawCall(client, m, [Buffer.from([0xff, 0xff, 0xff])], null);
        assert.equal(out.code, S.UNAUTHENTICATED, `${m.path}: ${S[out.code]} ${out.details}`);
      }
    }
  });
});
