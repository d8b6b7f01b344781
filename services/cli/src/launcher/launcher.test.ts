// The local launcher and `spark up` against the real service processes: start, READY lines, log files,
// a clean stop (SIGTERM → every child's pid gone, private Redis gone), and a child killed from outside
// making the cluster stop and `spark up` exit non-zero. Uses the services whose entry points exist;
// the full-cluster round trips (submit/watch/jobs/cancel) are in services/cli/src/commands/cluster.test.ts.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { redisAnswers } from '@spark/runtime/redis';

import { alive, runSpark, SPARK_BIN, until } from '../testing.js';
import { ClusterStartError, serviceMain, startLocalCluster, type ServiceName } from './index.js';

/** Services with an entry point in this checkout, lightest first (for partial-cluster tests). */
const available = (
  ['reward-synthesis', 'verifier', 'rollout', 'coordinator', 'learner'] as ServiceName[]
).filter((s) => existsSync(serviceMain(s)));
const light = available.filter((s) => s !== 'learner' && s !== 'coordinator').slice(0, 2);
const skip = light.length === 0 ? 'no worker service has an entry point yet' : false;

describe('local launcher', { skip }, () => {
  it('starts services as child processes, logs to files, and stops them all with the private Redis', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'spark-launch-'));
    const lines: string[] = [];
    const cluster = await startLocalCluster({ dataDir, services: light, log: (l) => lines.push(l) });
    try {
      assert.equal(cluster.children.length, light.length);
      for (const c of cluster.children) {
        assert.ok(alive(c.pid), `${c.name} runs`);
        assert.ok(
          typeof c.ready.metricsPort === 'number' && c.ready.metricsPort > 0,
          `${c.name} READY has a metrics port`,
        );
        const res = await fetch(`http://127.0.0.1:${c.ready.metricsPort}/metrics`);
        assert.equal(res.status, 200);
        assert.ok(existsSync(c.logFile));
      }
      assert.ok(await redisAnswers(cluster.redisUrl, 1_000));
      assert.ok(lines.some((l) => /private redis-server/.test(l)));
    } finally {
      await cluster.stop();
    }
    for (const c of cluster.children) assert.ok(!alive(c.pid), `${c.name} (pid ${c.pid}) is gone`);
    for (const c of cluster.children)
      assert.ok(c.process.signalCode === null || c.process.signalCode === 'SIGTERM');
    assert.equal(await redisAnswers(cluster.redisUrl, 500), false, 'the private Redis is stopped');
    // A graceful stop: the services exited on SIGTERM by themselves (status 0), not by SIGKILL.
    for (const c of cluster.children) assert.equal(c.process.exitCode, 0, `${c.name} exit status`);
  });

  it('reports a child that dies unexpectedly and stops the rest', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'spark-launch-'));
    const services = light.length >= 2 ? light : [light[0] as ServiceName];
    const cluster = await startLocalCluster({ dataDir, services, verifierWorkers: 2 });
    const victim = cluster.children[0];
    assert.ok(victim);
    process.kill(victim.pid, 'SIGKILL');
    const failure = await cluster.failure;
    assert.equal(failure.name, victim.name);
    assert.equal(failure.signal, 'SIGKILL');
    await cluster.stop();
    for (const c of cluster.children)
      await until(() => !alive(c.pid), { timeoutMs: 30_000, message: `${c.name} (pid ${c.pid}) to be gone` });
  });

  it('refuses a Redis URL that does not answer and bad worker counts', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'spark-launch-'));
    await assert.rejects(
      startLocalCluster({ dataDir, redisUrl: 'redis://127.0.0.1:1', services: light }),
      /no Redis answers/,
    );
    await assert.rejects(startLocalCluster({ dataDir, rolloutWorkers: 0 }), ClusterStartError);
  });
});

/** Runs `spark up` until `until` matches its stdout; returns the child and a promise of its exit. */
function sparkUp(args: string[]) {
  const child = spawn(process.execPath, [SPARK_BIN, 'up', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  const ready = async () => {
    await until(() => /cluster ready/.test(stdout) || child.exitCode !== null, {
      timeoutMs: 180_000,
      intervalMs: 50,
      message: '`spark up` to print "cluster ready" or exit',
    }).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${stdout}\n${stderr}`);
    });
    assert.ok(/cluster ready/.test(stdout), `spark up did not become ready:\n${stdout}\n${stderr}`);
  };
  return { child, exited, ready, out: () => stdout, err: () => stderr };
}

describe('spark up', { skip }, () => {
  it('runs until SIGTERM, then stops every child (no orphans) and exits 0', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'spark-up-'));
    // The whole cluster once every service has an entry point; the lighter subset before that.
    const full = available.length === 5;
    const up = sparkUp(['--data-dir', dataDir, ...(full ? [] : ['--only', light.join(',')])]);
    await up.ready();
    const rec = JSON.parse(readFileSync(join(dataDir, 'cluster.json'), 'utf8')) as {
      coordinatorAddress: string;
      children: { name: string; pid: number }[];
    };
    assert.equal(rec.children.length, full ? 5 : light.length);
    for (const c of rec.children) assert.ok(alive(c.pid));
    if (full) {
      // Client commands find the cluster through cluster.json.
      assert.match(rec.coordinatorAddress, /^127\.0\.0\.1:\d+$/);
      const jobs = await runSpark(['jobs', '--data-dir', dataDir]);
      assert.equal(jobs.code, 0, jobs.stderr);
      assert.match(jobs.stdout, /no jobs/);
    }
    up.child.kill('SIGTERM');
    assert.equal(await up.exited, 0, up.err());
    for (const c of rec.children) assert.ok(!alive(c.pid), `${c.name} (pid ${c.pid}) was left running`);
    assert.match(up.out(), /stopped/);
    assert.equal(existsSync(join(dataDir, 'cluster.json')), false);
  });

  it('services stop by themselves when the launcher is SIGKILLed (no orphans)', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'spark-up-'));
    const up = sparkUp(['--data-dir', dataDir, '--only', light.join(',')]);
    await up.ready();
    const rec = JSON.parse(readFileSync(join(dataDir, 'cluster.json'), 'utf8')) as {
      children: { name: string; pid: number }[];
    };
    assert.ok(rec.children.length >= 1);
    const port = /private redis-server on port (\d+)/.exec(up.out())?.[1];
    assert.ok(port, `the private redis-server's port is printed:\n${up.out()}`);
    assert.ok(await redisAnswers(`redis://127.0.0.1:${port}`, 2_000));
    up.child.kill('SIGKILL');
    await up.exited;
    const left = () => rec.children.filter((c) => alive(c.pid));
    try {
      await until(() => left().length === 0, {
        timeoutMs: 60_000,
        message: 'every service to stop after its launcher was SIGKILLed',
      }).catch((err: unknown) => {
        throw new Error(
          `${String(err)}; left running: ${left()
            .map((c) => c.name)
            .join(', ')}`,
        );
      });
    } finally {
      for (const c of left()) process.kill(c.pid, 'SIGKILL');
    }
    // the private redis-server dies with its launcher too (parent-death signal via setpriv)
    await until(async () => !(await redisAnswers(`redis://127.0.0.1:${port}`, 200)), {
      timeoutMs: 30_000,
      intervalMs: 100,
      message: `the private redis-server on port ${port} to die with its launcher`,
    });
  });

  it('exits non-zero with the dead service named when a child is killed', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'spark-up-'));
    const up = sparkUp(['--data-dir', dataDir, '--only', light.join(',')]);
    await up.ready();
    const rec = JSON.parse(readFileSync(join(dataDir, 'cluster.json'), 'utf8')) as {
      children: { name: string; pid: number }[];
    };
    const victim = rec.children[0];
    assert.ok(victim);
    process.kill(victim.pid, 'SIGKILL');
    assert.equal(await up.exited, 1);
    assert.match(up.err(), new RegExp(`${victim.name} died unexpectedly`));
    for (const c of rec.children) assert.ok(!alive(c.pid), `${c.name} was left running`);
  });
});
