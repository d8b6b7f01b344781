// Hostile job specs: property tests of normalizeSpec (every field at once: zero, boundary, out-of-range,
// NaN/∞, fractional, huge, hostile strings — paths escaping the roots, control characters, very long text)
// and of the real SubmitJob over gRPC to a coordinator with a real Redis. A spec is either accepted with
// every field inside its documented range (and normalising it again changes nothing), or refused with
// INVALID_ARGUMENT whose problems each name a JobSpec field; nothing else (no INTERNAL, no other error).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import fc from 'fast-check';

import { coordinatorConfig, normalizeSpec, startCoordinator, type Coordinator } from '@spark/coordinator';
import { Algorithm, JobServiceClient, JobSpec, JobState, type JobStatus } from '@spark/protocol';
import { InvalidArgumentError, problemsFromMetadata } from '@spark/runtime';
import { clientSetup, grpc } from '@spark/runtime/grpc';
import { createLogger } from '@spark/runtime/logging';
import { testPrefix, testRedisUrl } from '@spark/runtime/testing';

const RUNS = Number(process.env.SPARK_FUZZ_RUNS ?? 200);
const SEED = Number(process.env.SPARK_FUZZ_SEED ?? 20261206);
const root = mkdtempSync(join(tmpdir(), 'spark-hostile-spec-'));
const roots = { dataDir: join(root, 'ckpt'), datasetDir: join(root, 'data') };
mkdirSync(roots.dataDir, { recursive: true });
mkdirSync(roots.datasetDir, { recursive: true });
writeFileSync(join(roots.datasetDir, 'ok.jsonl'), '{"question":"1+1?","answer":"2"}\n');
const FIELDS = new Set(Object.keys(JobSpec.fromPartial({})));

/** Numbers a hostile client may put in any numeric field. */
const hostileNumber = fc.oneof(
  { weight: 3, arbitrary: fc.constant(0) },
  { weight: 4, arbitrary: fc.integer({ min: 1, max: 64 }) },
  { weight: 2, arbitrary: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) },
  { weight: 2, arbitrary: fc.double({ noNaN: false }) },
  { weight: 2, arbitrary: fc.double({ min: 0, max: 1, noNaN: true }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(NaN, Infinity, -Infinity, -0, 2 ** 53, 2 ** 64, Number.MIN_VALUE, 1e-300),
  },
);
/** Strings a hostile client may put in any text field. */
const hostileString = fc.oneof(
  { weight: 3, arbitrary: fc.constant('') },
  { weight: 3, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 40 }) },
  {
    weight: 2,
    arbitrary: fc.constantFrom(
      'builtin',
      'tiny',
      'ok.jsonl',
      '../../../../etc/passwd',
      '/etc/passwd',
      '/',
      '.',
      '..',
      'sha256:' + '0'.repeat(64),
      'job\u0000name',
      'a\nb',
      ' cosine ',
      'full',
      'short',
      'gsm8k',
      'jsonl',
      '\u202e\ud800',
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 100, max: 20_000 }).map((n) => 'x'.repeat(n)) },
);
const optionalBool = fc.option(fc.boolean(), { nil: undefined });
/** Mostly the field's default (0 / ""), so that some specs are valid, sometimes a hostile value. */
const mostlyUnset = <T>(unset: T, hostile: fc.Arbitrary<T>): fc.Arbitrary<T> =>
  fc.oneof({ weight: 25, arbitrary: fc.constant(unset) }, { weight: 1, arbitrary: hostile });
const num = mostlyUnset(0, hostileNumber);
const str = mostlyUnset('', hostileString);

const hostileSpec: fc.Arbitrary<JobSpec> = fc
  .record({
    name: str,
    model: str,
    dataset: str,
    algorithm: fc.constantFrom(...Object.values(Algorithm).filter((v) => typeof v === 'number'), 7, -1),
    batchSize: num,
    groupSize: num,
    epochs: num,
    maxSteps: num,
    learningRate: num,
    clipEpsilon: num,
    klCoefficient: num,
    temperature: num,
    maxNewTokens: num,
    warmupSteps: num,
    seed: num,
    topP: num,
    lrSchedule: str,
    lrWarmupRatio: num,
    minLrRatio: num,
    recyclePointwise: optionalBool,
    recyclePairwise: optionalBool,
    recycleReflection: optionalBool,
    evalInterval: num,
    checkpointInterval: num,
    rolloutWorkers: num,
    evalSize: num,
    miniBatchSize: num,
    templateVariant: str,
    checkpointDir: str,
    warmupBatchSize: num,
    warmupLearningRate: num,
    datasetFormat: str,
    trainSize: num,
    microBatchSize: num,
    taskFamilies: mostlyUnset<string[]>([], fc.array(hostileString, { maxLength: 12 })),
    taskMaxDifficulty: num,
    warmupJudgeFraction: mostlyUnset<number | undefined>(undefined, hostileNumber),
    recycleBalanceLabels: optionalBool,
    verifyUnboxed: optionalBool,
    warmupLrSchedule: str,
  })
  .map((r) => JobSpec.fromPartial(r as Partial<JobSpec>));

/**
 * The spec as the wire carries it: the client's encoder refuses numbers its field type cannot hold (NaN in
 * an integer, a negative uint32), so such values never reach a server; they become the nearest it can hold.
 */
function onTheWire(spec: JobSpec): JobSpec {
  const out: JobSpec = { ...spec };
  const numbers = out as unknown as Record<string, number>;
  for (const [k, v] of Object.entries(spec)) {
    if (typeof v !== 'number') continue;
    try {
      JobSpec.encode(JobSpec.fromPartial({ ...JobSpec.fromPartial({}), [k]: v }));
    } catch {
      numbers[k] = Number.isFinite(v) ? Math.min(Math.abs(Math.trunc(v)), 2 ** 32 - 1) : 0;
    }
  }
  return JobSpec.decode(JobSpec.encode(out).finish());
}

/** What an accepted spec must satisfy (the documented ranges, checked independently of normalizeSpec). */
function assertInRange(s: JobSpec): void {
  const intIn = (v: number, lo: number, hi: number, f: string) =>
    assert.ok(Number.isInteger(v) && v >= lo && v <= hi, `${f} = ${v}`);
  const finite = (v: number, f: string) => assert.ok(Number.isFinite(v), `${f} = ${v}`);
  intIn(s.batchSize, 1, 4096, 'batchSize');
  intIn(s.groupSize, 2, 256, 'groupSize');
  intIn(s.maxNewTokens, 1, 8192, 'maxNewTokens');
  intIn(s.miniBatchSize, 1, 65_536, 'miniBatchSize');
  intIn(s.microBatchSize, 1, s.miniBatchSize, 'microBatchSize');
  intIn(s.trainSize, 1, 1_000_000, 'trainSize');
  for (const f of ['learningRate', 'temperature', 'topP', 'clipEpsilon', 'warmupLearningRate'] as const) {
    finite(s[f], f);
    assert.ok(s[f] > 0, `${f} = ${s[f]}`);
  }
  assert.ok(Number.isSafeInteger(s.seed) && s.seed >= 0, `seed = ${s.seed}`);
  assert.ok(
    s.name.length <= 128 && ![...s.name].some((ch) => ch.charCodeAt(0) < 0x20 || ch.charCodeAt(0) === 0x7f),
    'name',
  );
  assert.ok(s.model === 'tiny' || s.model.startsWith(roots.dataDir) || s.model.startsWith(roots.datasetDir));
  assert.ok(s.dataset === 'builtin' || s.dataset.startsWith(roots.datasetDir), `dataset ${s.dataset}`);
  assert.ok(s.checkpointDir.startsWith(roots.dataDir), `checkpointDir ${s.checkpointDir}`);
}

function assertProblems(problems: readonly string[]): void {
  assert.ok(problems.length > 0, 'a refusal lists its problems');
  for (const p of problems) {
    const field = p.split(':')[0] ?? '';
    assert.ok(FIELDS.has(field), `problem names a JobSpec field: ${p.slice(0, 200)}`);
    assert.ok(p.length < 2_000, `problem text is bounded (${p.length} chars)`);
  }
}

describe('hostile job specs', () => {
  it('normalizeSpec: accepts in range (idempotently) or refuses with InvalidArgumentError naming fields', () => {
    let accepted = 0;
    fc.assert(
      fc.property(hostileSpec, (input) => {
        let spec: JobSpec;
        try {
          spec = normalizeSpec(input, { ...roots, jobId: 'hostile-job' });
        } catch (err) {
          assert.ok(err instanceof InvalidArgumentError, `not an InvalidArgumentError: ${String(err)}`);
          assertProblems(err.problems);
          return;
        }
        accepted++;
        assertInRange(spec);
        assert.deepEqual(normalizeSpec(spec, { ...roots, jobId: 'hostile-job' }), spec, 'idempotent');
      }),
      { numRuns: RUNS * 5, seed: SEED },
    );
    // the generator reaches both sides
    assert.ok(accepted > 0, 'some hostile specs were valid');
  });

  describe('through SubmitJob', () => {
    let c: Coordinator;
    let client: JobServiceClient;
    before(async () => {
      c = await startCoordinator(
        coordinatorConfig({
          localMode: true,
          redisUrl: await testRedisUrl(),
          redisPrefix: testPrefix('hostile-spec'),
          logLevel: 'silent',
          ...roots,
          schedulePollMs: 60_000,
          maxQueuedJobs: 10_000,
        }),
        { logger: createLogger({ service: 'hostile-spec', level: 'silent' }) },
      );
      const setup = clientSetup({ token: null, defaultDeadlineMs: 10_000 });
      client = new JobServiceClient(`127.0.0.1:${c.grpcPort}`, setup.credentials, setup.options);
    });
    after(async () => {
      client?.close();
      await c?.close();
    });

    it('every spec is stored as normalised or refused with INVALID_ARGUMENT listing fields', async () => {
      const codes = new Map<string, number>();
      await fc.assert(
        fc.asyncProperty(hostileSpec.map(onTheWire), async (spec) => {
          let local: 'OK' | 'INVALID_ARGUMENT' = 'OK';
          try {
            normalizeSpec(spec, { ...roots, jobId: 'local-check' });
          } catch {
            local = 'INVALID_ARGUMENT';
          }
          const res = await new Promise<{ jobId: string; status: JobStatus } | grpc.ServiceError>((resolve) =>
            client.submitJob({ spec }, (err, r) =>
              resolve(err ?? (r as { jobId: string; status: JobStatus })),
            ),
          );
          if ('code' in res) {
            codes.set(grpc.status[res.code], (codes.get(grpc.status[res.code]) ?? 0) + 1);
            assert.equal(res.code, grpc.status.INVALID_ARGUMENT, `${grpc.status[res.code]}: ${res.details}`);
            assert.equal(local, 'INVALID_ARGUMENT', `refused by the server only: ${res.details}`);
            assertProblems(problemsFromMetadata(res.metadata));
            return;
          }
          codes.set('OK', (codes.get('OK') ?? 0) + 1);
          assert.equal(local, 'OK', 'accepted by the server only');
          const stored = res.status.spec;
          assert.ok(stored);
          assertInRange(stored);
        }),
        { numRuns: RUNS, seed: SEED },
      );
      assert.ok(
        (codes.get('OK') ?? 0) > 0 && (codes.get('INVALID_ARGUMENT') ?? 0) > 0,
        JSON.stringify([...codes]),
      );
    });
  });

  // Regression (found by `pnpm bench:load`: 220 queued jobs with a bound of 200 under 20 concurrent callers):
  // the queue bound holds for concurrent submissions.
  it('maxQueuedJobs holds under concurrent SubmitJob calls', async () => {
    const max = 5;
    const c = await startCoordinator(
      coordinatorConfig({
        localMode: true,
        redisUrl: await testRedisUrl(),
        redisPrefix: testPrefix('hostile-admit'),
        logLevel: 'silent',
        ...roots,
        maxQueuedJobs: max,
      }),
      { logger: createLogger({ service: 'hostile-admit', level: 'silent' }) },
    );
    const setup = clientSetup({ token: null, defaultDeadlineMs: 20_000 });
    const client = new JobServiceClient(`127.0.0.1:${c.grpcPort}`, setup.credentials, setup.options);
    try {
      const spec = JobSpec.fromPartial({
        name: 'admit',
        trainSize: 64,
        evalSize: 4,
        batchSize: 4,
        groupSize: 2,
      });
      const codes = await Promise.all(
        Array.from(
          { length: 40 },
          () =>
            new Promise<grpc.status>((resolve) =>
              client.submitJob({ spec }, (err) => resolve(err ? err.code : grpc.status.OK)),
            ),
        ),
      );
      const ok = codes.filter((x) => x === grpc.status.OK).length;
      assert.deepEqual(
        [...new Set(codes)].sort(),
        [grpc.status.OK, grpc.status.RESOURCE_EXHAUSTED].sort(),
        String(codes),
      );
      const jobs = await new Promise<JobStatus[]>((resolve, reject) =>
        client.listJobs({ limit: 100 }, (err, r) => (err ? reject(err) : resolve(r.jobs))),
      );
      assert.equal(jobs.length, ok);
      // at most `max` wait at once; a job the scheduler started in between no longer counts
      const started = jobs.filter((j) => j.state !== JobState.JOB_STATE_QUEUED).length;
      assert.ok(ok - started <= max, `${ok} admitted, ${started} started, bound ${max}`);
      assert.ok(ok <= max + 1, `${ok} admitted with a bound of ${max} and one job running`);
    } finally {
      client.close();
      await c.close();
    }
  });
});
