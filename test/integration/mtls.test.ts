// The whole cluster on mutual TLS, with certificates made in the test by the `openssl` CLI: a CA, one
// certificate every service uses as server and client (SAN 127.0.0.1), a client certificate for the test's
// own calls, and a second CA with a certificate of its own. Outside local mode with mTLS and no token
// source, a verified certificate is the principal `mtls:<CN>` (docs/api.md).
//
// What must hold:
//   - a client without a certificate, with one from another CA, or without TLS at all, is refused;
//   - a client with a certificate of the cluster's CA is served, and so is the CLI given the same files;
//   - a short job trains to SUCCEEDED: the rollout workers fetch the weights from the learner over mTLS
//     (clientTlsFrom) and the job's owner is the certificate's principal.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { JobClient, type ConnectOptions } from '@spark/cli/client';
import { followJob } from '@spark/cli/follow';
import { startLocalCluster, type LocalCluster } from '@spark/cli/launcher';
import { runSpark } from '@spark/cli/testing';
import { JobSpec, JobState } from '@spark/protocol';
import { grpc } from '@spark/runtime/grpc';

const dir = mkdtempSync(join(tmpdir(), 'spark-mtls-'));
const f = (name: string) => join(dir, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A self-signed CA `name`.crt/.key. */
function makeCa(name: string): void {
  openssl(
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', f(`${name}.key`), '-out', f(`${name}.crt`), '-days', '1', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
  ); // prettier-ignore
}

/**
 * A leaf `name`.crt/.key with common name `cn` (and organisation `o`, the roles), signed by `ca`, for
 * server and client use on 127.0.0.1.
 */
function makeLeaf(name: string, cn: string, ca: string, o?: string): void {
  writeFileSync(
    f(`${name}.ext`),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\nbasicConstraints=CA:FALSE\n',
  );
  openssl(
    'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${cn}${o ? `/O=${o}` : ''}`,
  ); // prettier-ignore
  openssl(
    'x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${ca}.crt`), '-CAkey', f(`${ca}.key`),
    '-set_serial', String(Date.now()), '-days', '1', '-out', f(`${name}.crt`), '-extfile', f(`${name}.ext`),
  ); // prettier-ignore
}

/** A short job: no warm-up, one RL step of the tiny model on the built-in tasks. */
const SHORT_JOB = JobSpec.fromPartial({
  name: 'mtls',
  model: 'tiny',
  batchSize: 4,
  groupSize: 2,
  maxSteps: 1,
  maxNewTokens: 16,
  trainSize: 64,
  evalSize: 4,
});

describe('the cluster on mutual TLS', () => {
  let cluster: LocalCluster;
  const clients: JobClient[] = [];
  const connect = (tls: ConnectOptions['tls'] | undefined): JobClient => {
    const c = new JobClient({
      address: cluster.coordinatorAddress,
      token: null,
      deadlineMs: 15_000,
      ...(tls ? { tls } : {}),
    });
    clients.push(c);
    return c;
  };
  const good = { caFile: f('ca.crt'), certFile: f('cli.crt'), keyFile: f('cli.key') };
  let trainedJob = '';

  before(async () => {
    makeCa('ca');
    makeCa('other-ca');
    makeLeaf('node', 'spark-node', 'ca');
    makeLeaf('cli', 'researcher-cli', 'ca');
    makeLeaf('intruder', 'intruder', 'other-ca');
    makeLeaf('bob', 'bob', 'ca', 'researcher');
    cluster = await startLocalCluster({
      dataDir: f('cluster'),
      prefix: 'mtls',
      env: {
        SPARK_LOCAL_MODE: 'false',
        SPARK_AUTH_TOKEN: '',
        SPARK_TLS_CERT_FILE: f('node.crt'),
        SPARK_TLS_KEY_FILE: f('node.key'),
        SPARK_TLS_CA_FILE: f('ca.crt'),
      },
    });
  });
  after(async () => {
    for (const c of clients) c.close();
    await cluster?.stop();
  });

  it('refuses clients without a certificate of its CA, or without TLS, and serves those with one', async () => {
    const refusals: [string, ConnectOptions['tls'] | undefined][] = [
      ['no client certificate', { caFile: f('ca.crt') }],
      [
        'a certificate of another CA',
        { caFile: f('ca.crt'), certFile: f('intruder.crt'), keyFile: f('intruder.key') },
      ],
      ['no TLS', undefined],
    ];
    for (const [what, tls] of refusals) {
      await assert.rejects(connect(tls).list(), (err: Error & { code?: number }) => {
        assert.match(err.message, /cannot reach the Spark cluster/, `${what}: ${err.message}`);
        return true;
      });
    }
    assert.deepEqual(await connect(good).list(), []);

    const args = ['jobs', '--json', '--address', cluster.coordinatorAddress, '--deadline', '15000'];
    const cli = await runSpark([
      ...args,
      ...['--tls-ca', good.caFile, '--tls-cert', good.certFile, '--tls-key', good.keyFile],
    ]);
    assert.equal(cli.code, 0, cli.stderr);
    const bad = await runSpark([...args, '--tls-ca', good.caFile]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /cannot reach the Spark cluster/);
  });

  it('trains a short job: weights reach the rollout workers over mTLS; the owner is the certificate', async () => {
    const client = connect(good);
    const { jobId, status } = await client.submit(SHORT_JOB);
    assert.equal(status?.owner, 'mtls:researcher-cli');
    const end = await Promise.race([
      followJob(client, jobId, { out: null }),
      cluster.failure.then((x) => {
        throw new Error(`${x.name} died during the job (${x.signal ?? x.code}):\n${x.logTail}`);
      }),
    ]);
    const final = await client.get(jobId);
    assert.equal(final.state, JobState.JOB_STATE_SUCCEEDED, `${JSON.stringify(end)} ${final.message}`);
    assert.ok(final.policyVersion >= 1, 'one RL update was published');
    trainedJob = jobId;
  });

  it("a certificate with O=researcher is a researcher: it sees only its own jobs and may not touch another's", async () => {
    assert.ok(trainedJob, 'the job of the previous test');
    const bob = connect({ caFile: f('ca.crt'), certFile: f('bob.crt'), keyFile: f('bob.key') });
    assert.deepEqual(await bob.list(), [], "the other principal's job is not listed");
    for (const call of [() => bob.get(trainedJob), () => bob.cancel(trainedJob)])
      await assert.rejects(call(), (err: Error & { code?: number }) => {
        assert.equal(err.code, grpc.status.PERMISSION_DENIED, err.message);
        return true;
      });
    assert.equal((await connect(good).get(trainedJob)).owner, 'mtls:researcher-cli');
  });
});
