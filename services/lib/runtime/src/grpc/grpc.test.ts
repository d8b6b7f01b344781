import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';

import { InvalidArgumentError, NotFoundError, problemsFromMetadata } from '../errors/index.js';
import { createLogger } from '../logging/index.js';
import { until } from '../testing/index.js';
import {
  JobServiceClient,
  JobServiceService,
  JobState,
  type GetJobRequest,
  type GetJobResponse,
  type WatchJobRequest,
  type WatchJobResponse,
} from '@spark/protocol';
import {
  clientTlsFrom,
  callUnary,
  checkHealth,
  clientSetup,
  grpc,
  GrpcServer,
  ipLiteralHost,
  serverStreamHandler,
  serviceTokenFrom,
  unaryHandler,
  type TokenSource,
} from './index.js';

const silent = createLogger({
  service: 'test',
  level: 'silent',
  destination: new Writable({ write: (_c, _e, cb) => cb() }),
});
const token = 'test-token-0123456789abcdef';

/** A JobService with just enough behaviour to exercise the adapters: one known job, typed failures. */
function jobServiceFor(server: GrpcServer, releaseStream: Promise<void>): void {
  server.addService(
    JobServiceService,
    {
      getJob: unaryHandler<GetJobRequest, GetJobResponse>(silent, async (req) => {
        if (req.jobId === '') throw new InvalidArgumentError('invalid GetJob request', ['jobId: required']);
        if (req.jobId === 'boom') throw new Error('secret internal detail');
        if (req.jobId !== 'job-1') throw new NotFoundError(`job ${req.jobId} not found`);
        return {
          status: {
            jobId: 'job-1',
            spec: undefined,
            state: JobState.JOB_STATE_RUNNING,
            step: 3,
            policyVersion: 2,
            message: '',
            createdAtMs: 1,
            updatedAtMs: 2,
            owner: 'someone',
          },
        };
      }),
      watchJob: serverStreamHandler<WatchJobRequest, WatchJobResponse>(silent, async (req, call) => {
        if (req.jobId === 'missing') throw new NotFoundError('job missing not found');
        for (let seq = 1; seq <= 3; seq++) {
          call.write({
            event: {
              jobId: req.jobId,
              seq,
              type: 2,
              state: 2,
              step: seq,
              phase: 1,
              metrics: { reward: seq / 4 },
              message: '',
              timeMs: 0,
            },
          });
        }
        await releaseStream;
      }),
    },
    'spark.v1.JobService',
  );
}

describe('gRPC helpers against a real server on loopback', () => {
  let server: GrpcServer;
  let address = '';
  let release!: () => void;
  const releaseStream = new Promise<void>((r) => (release = r));

  before(async () => {
    server = new GrpcServer({
      service: 'test',
      logger: silent,
      authToken: token,
      maxMessageBytes: 1024 * 1024,
      reflectionProtos: ['spark/v1/job.proto'],
    });
    jobServiceFor(server, releaseStream);
    const port = await server.listen('127.0.0.1', 0);
    address = `127.0.0.1:${port}`;
  });
  after(async () => {
    release();
    await server.shutdown(1_000);
  });

  function client(opts: { token: TokenSource; deadlineMs?: number; maxMessageBytes?: number }) {
    const setup = clientSetup({
      token: opts.token,
      defaultDeadlineMs: opts.deadlineMs ?? 5_000,
      ...(opts.maxMessageBytes ? { maxMessageBytes: opts.maxMessageBytes } : {}),
    });
    return new JobServiceClient(address, setup.credentials, setup.options);
  }

  it('answers health checks without a token (Kubernetes probes) and reports SERVING', async () => {
    assert.equal(await checkHealth(address, { token: null, defaultDeadlineMs: 2_000 }), 'SERVING');
    assert.equal(
      await checkHealth(address, { token: null, defaultDeadlineMs: 2_000, service: 'spark.v1.JobService' }),
      'SERVING',
    );
  });

  it('round-trips a unary call with the right token', async () => {
    const c = client({ token });
    const res = await callUnary(c.getJob.bind(c), { jobId: 'job-1' });
    assert.equal(res.status?.jobId, 'job-1');
    assert.equal(res.status?.step, 3);
    assert.equal(res.status?.state, JobState.JOB_STATE_RUNNING);
    c.close();
  });

  it('rejects a missing or wrong token with UNAUTHENTICATED', async () => {
    for (const [t, msg] of [
      [null, /missing bearer token/],
      ['wrong-token-0123456789abcdef', /invalid bearer token/],
    ] as const) {
      const c = client({ token: t });
      await assert.rejects(callUnary(c.getJob.bind(c), { jobId: 'job-1' }), (err: grpc.ServiceError) => {
        assert.equal(err.code, grpc.status.UNAUTHENTICATED);
        assert.match(err.details, msg);
        return true;
      });
      c.close();
    }
  });

  it('presents the token of authServiceTokenFile, and a rotated one once the file is re-read', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spark-token-'));
    const path = join(dir, 'token');
    try {
      writeFileSync(path, 'old-token-0123456789abcdef\n');
      const logged: string[] = [];
      const logger = createLogger({
        service: 'test',
        level: 'info',
        destination: new Writable({ write: (chunk, _enc, done) => (logged.push(String(chunk)), done()) }),
      });
      const source = serviceTokenFrom(
        {
          localMode: false,
          authToken: '',
          authServiceToken: 'ignored-when-a-file-is-set',
          authServiceTokenFile: path,
          authReloadMs: 50,
        },
        logger,
      );
      const c = client({ token: source });
      const get = () => callUnary(c.getJob.bind(c), { jobId: 'job-1' });
      await assert.rejects(get(), (err: grpc.ServiceError) => err.code === grpc.status.UNAUTHENTICATED);
      writeFileSync(path, `${token}\n`); // the Secret is rotated in place
      await until(
        () =>
          get().then(
            () => true,
            () => false,
          ),
        { timeoutMs: 5_000, message: 'the new token' },
      );
      writeFileSync(path, 'two tokens\n'); // a broken new content: the last good token stays
      await until(() => logged.some((l) => l.includes('keeping the previous content')), {
        timeoutMs: 5_000,
        message: 'the broken content to be read',
      });
      assert.equal((await get()).status?.jobId, 'job-1');
      c.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('maps domain errors to status codes and never leaks internals', async () => {
    const c = client({ token });
    await assert.rejects(
      callUnary(c.getJob.bind(c), { jobId: 'nope' }),
      (err: grpc.ServiceError) =>
        err.code === grpc.status.NOT_FOUND && /job nope not found/.test(err.details),
    );
    await assert.rejects(callUnary(c.getJob.bind(c), { jobId: '' }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
      assert.match(err.details, /jobId: required/);
      assert.deepEqual(problemsFromMetadata(err.metadata), ['jobId: required']);
      return true;
    });
    await assert.rejects(callUnary(c.getJob.bind(c), { jobId: 'boom' }), (err: grpc.ServiceError) => {
      assert.equal(err.code, grpc.status.INTERNAL);
      assert.doesNotMatch(err.details, /secret/);
      return true;
    });
    c.close();
  });

  it('puts a deadline on every call: a stream that never ends fails with DEADLINE_EXCEEDED', async () => {
    const c = client({ token, deadlineMs: 300 });
    const call = c.watchJob({ jobId: 'job-1', afterSeq: 0 });
    const seqs: number[] = [];
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      call.on('data', (m: WatchJobResponse) => seqs.push(m.event?.seq ?? -1));
      call.on('error', resolve);
    });
    assert.deepEqual(seqs, [1, 2, 3]);
    assert.equal(err.code, grpc.status.DEADLINE_EXCEEDED);
    c.close();
  });

  it('ends a failed stream with its status at once (not at the deadline)', async () => {
    const c = client({ token, deadlineMs: 5_000 });
    const started = Date.now();
    const err = await new Promise<grpc.ServiceError>((resolve) => {
      const call = c.watchJob({ jobId: 'missing', afterSeq: 0 });
      call.on('data', () => undefined);
      call.on('error', resolve);
    });
    assert.equal(err.code, grpc.status.NOT_FOUND);
    assert.match(err.details, /job missing not found/);
    assert.ok(Date.now() - started < 2_000, 'the status arrives before the deadline');
    c.close();
  });

  it('enforces the message size limit', async () => {
    const c = client({ token });
    await assert.rejects(
      callUnary(c.getJob.bind(c), { jobId: 'x'.repeat(2 * 1024 * 1024) }),
      (err: grpc.ServiceError) => err.code === grpc.status.RESOURCE_EXHAUSTED,
    );
    c.close();
  });

  it('serves reflection: lists spark.v1.JobService and health', async () => {
    const { loadSync } = await import('@grpc/proto-loader');
    const { createRequire } = await import('node:module');
    const require = createRequire(import.meta.url);
    const reflectionDir = require
      .resolve('@grpc/reflection')
      .replace(/build\/src\/index\.js$/, 'build/proto/grpc/reflection/v1');
    const pkg = grpc.loadPackageDefinition(
      loadSync(`${reflectionDir}/reflection.proto`, { keepCase: true }),
    ) as unknown as {
      grpc: {
        reflection: {
          v1: {
            ServerReflection: new (
              a: string,
              c: grpc.ChannelCredentials,
              o?: grpc.ClientOptions,
            ) => grpc.Client & {
              ServerReflectionInfo: (
                md: grpc.Metadata,
              ) => grpc.ClientDuplexStream<
                object,
                { list_services_response?: { service: { name: string }[] } }
              >;
            };
          };
        };
      };
    };
    const setup = clientSetup({ token, defaultDeadlineMs: 3_000 });
    const rc = new pkg.grpc.reflection.v1.ServerReflection(address, setup.credentials, setup.options);
    const stream = rc.ServerReflectionInfo(new grpc.Metadata());
    const names = await new Promise<string[]>((resolve, reject) => {
      stream.on('data', (m: { list_services_response?: { service: { name: string }[] } }) => {
        resolve((m.list_services_response?.service ?? []).map((s: { name: string }) => s.name));
        stream.end();
      });
      stream.on('error', reject);
      stream.write({ list_services: '' });
    });
    assert.ok(names.includes('spark.v1.JobService'), names.join(','));
    assert.ok(names.includes('grpc.health.v1.Health'), names.join(','));
    rc.close();
  });

  it('drains on shutdown: health turns NOT_SERVING and the port stops answering', async () => {
    const s2 = new GrpcServer({
      service: 't2',
      logger: silent,
      authToken: null,
      maxMessageBytes: 1024 * 1024,
    });
    const port = await s2.listen('127.0.0.1', 0);
    assert.equal(
      await checkHealth(`127.0.0.1:${port}`, { token: null, defaultDeadlineMs: 2_000 }),
      'SERVING',
    );
    await s2.shutdown(1_000);
    await assert.rejects(checkHealth(`127.0.0.1:${port}`, { token: null, defaultDeadlineMs: 500 }));
  });
});

describe('ipLiteralHost', () => {
  it('finds an IP literal in the target forms grpc-js takes, and only there', () => {
    assert.equal(ipLiteralHost('127.0.0.1:50051'), '127.0.0.1');
    assert.equal(ipLiteralHost('dns:///10.0.0.7:443'), '10.0.0.7');
    assert.equal(ipLiteralHost('[::1]:50051'), '::1');
    assert.equal(ipLiteralHost('ipv4:127.0.0.1:1'), '127.0.0.1');
    assert.equal(ipLiteralHost('spark-coordinator.spark.svc:50051'), null);
    assert.equal(ipLiteralHost('localhost:50051'), null);
  });
});

describe('serviceTokenFrom', () => {
  it('presents authServiceToken, else the shared token, and nothing in local mode', () => {
    const base = { localMode: false, authToken: '', authServiceToken: '' };
    assert.equal(serviceTokenFrom(base), null);
    assert.equal(serviceTokenFrom({ ...base, authToken: 'shared' }), 'shared');
    assert.equal(serviceTokenFrom({ ...base, authToken: 'shared', authServiceToken: 'svc' }), 'svc');
    assert.equal(serviceTokenFrom({ ...base, localMode: true, authServiceToken: 'svc' }), null);
  });

  it('refuses a token file it cannot read, or that does not hold one token, at start', () => {
    const base = { localMode: false, authToken: '', authServiceToken: '' };
    assert.throws(
      () => serviceTokenFrom({ ...base, authServiceTokenFile: '/no/such/token' }),
      /cannot read \(ENOENT\)/,
    );
    const dir = mkdtempSync(join(tmpdir(), 'spark-token-'));
    try {
      writeFileSync(join(dir, 'empty'), '  \n');
      assert.throws(
        () => serviceTokenFrom({ ...base, authServiceTokenFile: join(dir, 'empty') }),
        /holds one token/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('clientTlsFrom', () => {
  it('is off without TLS files, and carries the CA and (for mTLS) the cert+key of the service', () => {
    assert.equal(clientTlsFrom({ tlsCaFile: '', tlsCertFile: '', tlsKeyFile: '' }), undefined);
    assert.deepEqual(clientTlsFrom({ tlsCaFile: '/ca.pem', tlsCertFile: '', tlsKeyFile: '' }), {
      caFile: '/ca.pem',
    });
    assert.deepEqual(clientTlsFrom({ tlsCaFile: '/ca.pem', tlsCertFile: '/c.pem', tlsKeyFile: '/k.pem' }), {
      caFile: '/ca.pem',
      certFile: '/c.pem',
      keyFile: '/k.pem',
    });
    // a server-only TLS setup (cert+key, no CA) still makes the client speak TLS, with the system roots
    assert.deepEqual(clientTlsFrom({ tlsCaFile: '', tlsCertFile: '/c.pem', tlsKeyFile: '/k.pem' }), {
      certFile: '/c.pem',
      keyFile: '/k.pem',
    });
  });
});
