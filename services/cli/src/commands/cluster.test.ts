// spark submit / jobs / watch / cancel against a real coordinator (started by the local launcher with a
// private Redis): the coordinator's INVALID_ARGUMENT problems all reach the user, and a submitted job can
// be listed, watched and cancelled (watch exits 2 for CANCELLED; cancelling again is refused, exit 1).
// Only the coordinator runs, so the job never gets past its first phase — what is tested is the API path.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { runSpark, SPARK_BIN, until } from '../testing.js';
import { serviceMain, startLocalCluster, type LocalCluster } from '../launcher/index.js';

const skip = existsSync(serviceMain('coordinator')) ? false : 'the coordinator has no entry point yet';

describe('client commands against a real coordinator', { skip }, () => {
  let cluster: LocalCluster;
  const dir = mkdtempSync(join(tmpdir(), 'spark-client-'));
  const TOKEN = 'cluster-test-token-0123456789';
  const addr = () => ['--address', cluster.coordinatorAddress, '--token', TOKEN];

  before(async () => {
    // Authentication on (not local mode): every call must carry the token.
    cluster = await startLocalCluster({
      dataDir: join(dir, 'cluster'),
      services: ['coordinator'],
      env: { SPARK_LOCAL_MODE: 'false', SPARK_AUTH_TOKEN: TOKEN },
    });
  });
  after(async () => {
    await cluster?.stop();
  });

  it('a wrong or missing token is refused with a clear message', async () => {
    for (const token of [['--token', 'wrong'], []]) {
      const r = await runSpark(['jobs', '--address', cluster.coordinatorAddress, ...token]);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /refused the credentials .*Pass --token TOKEN or set SPARK_AUTH_TOKEN/);
    }
  });

  it('submit: a spec the coordinator rejects lists every problem, exit 1', async () => {
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'batchSize: 100000\ngroupSize: 1\ntemperature: -1\nmodel: /no/such/dir\n');
    const r = await runSpark(['submit', file, ...addr()]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /the job spec was rejected as invalid:/);
    for (const field of ['batchSize', 'groupSize', 'temperature', 'model'])
      assert.match(r.stderr, new RegExp(`\\n  - ${field}: `), `${field} listed:\n${r.stderr}`);
  });

  it('submit → jobs → watch → cancel round trip', async () => {
    const file = join(dir, 'job.json');
    writeFileSync(
      file,
      JSON.stringify({ name: 'roundtrip', model: 'tiny', batchSize: 4, groupSize: 2, maxSteps: 1 }),
    );
    const sub = await runSpark(['submit', file, ...addr()]);
    assert.equal(sub.code, 0, sub.stderr);
    const jobId = sub.stdout.trim();
    assert.match(jobId, /^[a-z0-9][a-z0-9-]{0,62}$/);

    const jobs = await runSpark(['jobs', '--json', ...addr()]);
    assert.equal(jobs.code, 0, jobs.stderr);
    const listed = JSON.parse(jobs.stdout) as { jobId: string; spec: { name: string } }[];
    assert.equal(listed.find((j) => j.jobId === jobId)?.spec.name, 'roundtrip');
    const table = await runSpark(['jobs', ...addr()]);
    assert.match(table.stdout, new RegExp(`^${jobId}\\s+(queued|running)\\s+0`, 'm'));

    // watch follows the live job; cancel ends it; watch then exits 2 (CANCELLED).
    const watcher = spawn(process.execPath, [SPARK_BIN, 'watch', jobId, ...addr()], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let watchOut = '';
    watcher.stdout.on('data', (c: Buffer) => (watchOut += c.toString()));
    const watchExit = new Promise<number | null>((r) => watcher.on('close', (code) => r(code)));
    await until(() => /running|queued/.test(watchOut), {
      timeoutMs: 60_000,
      message: '`spark watch` to print the job state',
    }).catch((err: unknown) => assert.fail(`${String(err)}; watch printed: ${watchOut}`));

    const cancel = await runSpark(['cancel', jobId, ...addr()]);
    assert.equal(cancel.code, 0, cancel.stderr);
    assert.match(cancel.stdout, new RegExp(`job ${jobId}: (cancelled|running|queued)`));
    assert.equal(await watchExit, 2, watchOut);
    assert.match(watchOut, new RegExp(`job ${jobId} cancelled`));

    const again = await runSpark(['cancel', jobId, ...addr()]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already ended/);
    const unknown = await runSpark(['watch', 'no-such-job', ...addr()]);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no-such-job/);
  });
});

describe('per-user access through the CLI (a tokens file)', { skip }, () => {
  let cluster: LocalCluster;
  const dir = mkdtempSync(join(tmpdir(), 'spark-access-'));
  const ALICE = 'alice-cli-token-0123456789';
  const BOB = 'bob-cli-token-0123456789ab';

  before(async () => {
    const tokens = join(dir, 'tokens.json');
    writeFileSync(
      tokens,
      JSON.stringify({
        principals: [
          { name: 'alice', roles: ['researcher'], tokens: [ALICE] },
          { name: 'bob', roles: ['researcher'], tokens: [BOB] },
        ],
      }),
    );
    cluster = await startLocalCluster({
      dataDir: join(dir, 'cluster'),
      services: ['coordinator'],
      env: { SPARK_LOCAL_MODE: 'false', SPARK_AUTH_TOKENS_FILE: tokens },
    });
  });
  after(async () => {
    await cluster?.stop();
  });

  it("--token picks the principal; another researcher's job is refused with PERMISSION_DENIED, exit 1", async () => {
    const as = (token: string) => ['--address', cluster.coordinatorAddress, '--token', token];
    const file = join(dir, 'job.json');
    writeFileSync(file, JSON.stringify({ name: 'alices', model: 'tiny', batchSize: 4, groupSize: 2 }));
    const sub = await runSpark(['submit', file, ...as(ALICE)]);
    assert.equal(sub.code, 0, sub.stderr);
    const jobId = sub.stdout.trim();

    const mine = await runSpark(['jobs', '--json', ...as(ALICE)]);
    assert.equal(mine.code, 0, mine.stderr);
    const listed = JSON.parse(mine.stdout) as { jobId: string; owner: string }[];
    assert.deepEqual(
      listed.map((j) => [j.jobId, j.owner]),
      [[jobId, 'alice']],
    );
    const bobs = await runSpark(['jobs', '--json', ...as(BOB)]);
    assert.deepEqual(JSON.parse(bobs.stdout), [], 'bob does not see alice’s job');

    for (const cmd of [
      ['cancel', jobId],
      ['watch', jobId],
    ]) {
      const r = await runSpark([...cmd, ...as(BOB)]);
      assert.equal(r.code, 1, `${cmd[0]}: ${r.stderr}`);
      assert.match(
        r.stderr,
        new RegExp(
          `refused: permission denied: (GetJob|CancelJob|WatchJob) of job ${jobId}: it is not a job of bob`,
        ),
      );
    }
    const cancel = await runSpark(['cancel', jobId, ...as(ALICE)]);
    assert.equal(cancel.code, 0, cancel.stderr);
  });
});
