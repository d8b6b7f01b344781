// The compiled tree the images run (scripts/build-dist.mjs): built into a temporary directory, it must run
// with plain `node` (no tsx anywhere on the resolution path, no TypeScript file in it): the CLI's --help and
// `spark up` from that tree, which starts a service from its compiled entry point with plain node (the
// process command lines are checked), prints READY, serves /metrics and stops cleanly on SIGTERM. The
// workspace itself keeps running its sources with tsx (every other test does).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { until } from '@spark/runtime/testing';

import { repoRoot } from './chart.js';

const BUILD = join(repoRoot, 'scripts', 'build-dist.mjs');
/** Plain node: no loader flags inherited from the test runner (it runs with --import tsx). */
const plainEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env };
  delete env.NODE_OPTIONS;
  return { ...env, SPARK_ADDRESS: '', SPARK_AUTH_TOKEN: '' };
};

function* files(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules') continue;
    const p = join(dir, name);
    if (lstatSync(p).isDirectory()) yield* files(p);
    else yield p;
  }
}

describe('compiled tree (scripts/build-dist.mjs)', () => {
  let tmp: string;
  let out: string;
  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'spark-dist-'));
    out = join(tmp, 'app');
    const r = spawnSync(process.execPath, [BUILD, '--out', out], { encoding: 'utf8', env: plainEnv() });
    assert.equal(r.status, 0, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stdout, /build-dist: .*coordinator.* → /);
  });
  after(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('holds JavaScript only, without tsx, esbuild or TypeScript, tests or benchmarks', () => {
    const all = [...files(join(out, 'services')), ...files(join(out, 'kernels'))];
    assert.ok(all.some((f) => f.endsWith(join('services', 'coordinator', 'src', 'main.js'))));
    for (const f of all) {
      assert.doesNotMatch(f, /\.ts$|\.test\.js$|[/\\](bench|fixtures|test|testing)[/\\]/, f);
    }
    const store = readdirSync(join(out, 'node_modules', '.pnpm'));
    for (const id of store) assert.doesNotMatch(id, /^(tsx|esbuild|@esbuild|typescript)@/, id);
    for (const dir of ['services/cli', 'services/coordinator', 'services/lib/verify']) {
      const pkg = JSON.parse(readFileSync(join(out, dir, 'package.json'), 'utf8')) as {
        exports: Record<string, string>;
        dependencies: Record<string, string>;
      };
      assert.equal(pkg.dependencies.tsx, undefined, dir);
      for (const target of Object.values(pkg.exports)) assert.match(target, /\.js$/, `${dir}: ${target}`);
      assert.equal(existsSync(join(out, dir, 'node_modules', 'tsx')), false, `${dir}/node_modules/tsx`);
    }
    // Nothing on the CLI's resolution path finds tsx.
    const r = spawnSync(
      process.execPath,
      ['--input-type=module', '--eval', "import('tsx').then(() => process.exit(3), () => process.exit(0))"],
      { cwd: join(out, 'services', 'cli', 'src'), env: plainEnv() },
    );
    assert.equal(r.status, 0, 'tsx resolves from the compiled CLI');
  });

  it('runs the CLI with plain node', () => {
    const r = spawnSync(process.execPath, [join(out, 'services/cli/bin/spark.mjs'), '--help'], {
      encoding: 'utf8',
      env: plainEnv(),
      cwd: tmp,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /Usage: spark/);
    assert.match(r.stdout, /doctor/);
    // The answer checker's symbolic worker thread starts from its compiled bootstrap.
    const v = spawnSync(process.execPath, [join(out, 'services/cli/bin/spark.mjs'), 'verify'], {
      encoding: 'utf8',
      env: plainEnv(),
      cwd: tmp,
      input: '{"response":"\\\\boxed{x^2+2x+1}","label":"(x+1)^2"}\n',
    });
    assert.equal(v.status, 0, v.stderr);
    assert.equal((JSON.parse(v.stdout) as { reason: string; reward: number }).reason, 'boxed:symbolic');
  });

  it('starts a service from its compiled entry point with plain node (spark up), and stops it', async () => {
    const dataDir = join(tmp, 'up');
    const child = spawn(
      process.execPath,
      [join(out, 'services/cli/bin/spark.mjs'), 'up', '--data-dir', dataDir, '--only', 'verifier'],
      { env: plainEnv(), cwd: tmp, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
    try {
      await until(() => /cluster ready/.test(stdout) || child.exitCode !== null, {
        timeoutMs: 120_000,
        intervalMs: 100,
        message: '`spark up` from the compiled tree to be ready',
      });
      assert.match(stdout, /cluster ready/, `${stdout}\n${stderr}`);
      const rec = JSON.parse(readFileSync(join(dataDir, 'cluster.json'), 'utf8')) as {
        children: { name: string; pid: number }[];
      };
      const verifier = rec.children.find((c) => c.name.startsWith('verifier'));
      assert.ok(verifier);
      const argv = readFileSync(`/proc/${verifier.pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
      assert.deepEqual(argv.slice(1), [join(out, 'services/verifier/src/main.js')], argv.join(' '));
      const log = readFileSync(join(dataDir, 'logs', `${verifier.name}.log`), 'utf8');
      const port = /"metricsPort":(\d+)/.exec(log)?.[1];
      assert.ok(port, log);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(metrics, /^# TYPE spark_verifier_tasks_total counter$/m);
    } finally {
      child.kill('SIGTERM');
    }
    assert.equal(await exited, 0, `${stdout}\n${stderr}`);
  });

  it('refuses a non-empty output directory and an unknown package', () => {
    const busy = spawnSync(process.execPath, [BUILD, '--out', out], { encoding: 'utf8', env: plainEnv() });
    assert.equal(busy.status, 1);
    assert.match(busy.stderr, /is not empty/);
    const unknown = spawnSync(process.execPath, [BUILD, '--out', join(tmp, 'x'), '--only', 'nope'], {
      encoding: 'utf8',
      env: plainEnv(),
    });
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /unknown package "nope"/);
  });
});
