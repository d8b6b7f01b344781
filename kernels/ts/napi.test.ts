// Tests of the Node-API boundary through the real addon: the generated declarations match what the addon
// exports, typed-array copy semantics, error and panic mapping (a Rust panic on the JS thread, on a worker,
// and on a scoped thread below a worker each become a JS Error), async work running off the JS thread,
// handles that are not ours.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  AddonNotBuiltError,
  addonPath,
  InvalidInputError,
  loadNative,
  NativePanicError,
  platformTriple,
  toKernelError,
} from './index.js';

process.env.SPARK_KERNELS_QUIET_PANICS = '1';
const native = loadNative();
const here = import.meta.dirname;

void describe('backend info', () => {
  // a child process: the GEMM path and the thread count are read once per process, from the environment
  const info = (env: Record<string, string>): Record<string, unknown> => {
    const r = spawnSync(
      process.execPath,
      [
        '--import',
        'tsx',
        '--input-type=module',
        '-e',
        `import { backendInfo } from ${JSON.stringify(join(here, 'index.ts'))};
         process.stdout.write(JSON.stringify(backendInfo()));`,
      ],
      { encoding: 'utf8', env: { ...process.env, ...env }, cwd: here },
    );
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };

  void it('reports the GEMM path, BLAS kernels and threads that SPARK_GEMM and SPARK_THREADS chose', () => {
    const scalar = info({ SPARK_GEMM: 'scalar', SPARK_THREADS: '3' });
    assert.equal(scalar.gemm, 'scalar');
    assert.equal(scalar.threads, 3);
    const blas = info({ SPARK_GEMM: 'blas', SPARK_THREADS: '1' });
    assert.equal(blas.threads, 1);
    if (blas.gemm === 'blas') {
      // OpenBLAS loaded: its library and the kernel set it picked for this CPU are named
      assert.match(String(blas.blasLibrary), /libopenblas\.so/);
      assert.match(String(blas.blasCore), /^\w+$/);
    } else assert.equal(blas.blasLibrary ?? null, null, 'no BLAS library named when none loaded');
  });

  void it('reports the kernel set OPENBLAS_CORETYPE forced (how a run is followed on another CPU)', (t) => {
    if (info({ SPARK_GEMM: 'blas' }).gemm !== 'blas') return t.skip('OpenBLAS is not installed here');
    // Prescott's kernels (SSE3) run on every x86-64 CPU, whatever OpenBLAS would pick here
    const forced = info({ SPARK_GEMM: 'blas', OPENBLAS_CORETYPE: 'Prescott' });
    assert.equal(forced.blasCore, 'Prescott');
  });

  void it('reports the sampler mode for a model size, as SPARK_SAMPLE_MODE or the cache rule picks it', () => {
    const mode = (env: Record<string, string>, params: number): string => {
      const r = spawnSync(
        process.execPath,
        [
          '--import',
          'tsx',
          '--input-type=module',
          '-e',
          `import { sampleModeFor } from ${JSON.stringify(join(here, 'index.ts'))};
           process.stdout.write(sampleModeFor(${params}));`,
        ],
        { encoding: 'utf8', env: { ...process.env, SPARK_SAMPLE_MODE: '', ...env }, cwd: here },
      );
      assert.equal(r.status, 0, r.stderr);
      return r.stdout;
    };
    // a 1000-parameter model fits any cache rule (and the 1 MB rule without sysfs); 2^40 parameters none
    assert.equal(mode({}, 1000), 'groups');
    assert.equal(mode({}, 2 ** 40), 'split');
    assert.equal(mode({ SPARK_SAMPLE_MODE: 'split' }, 1000), 'split');
    assert.equal(mode({ SPARK_SAMPLE_MODE: 'groups' }, 2 ** 40), 'groups');
    for (const bad of [-1, 1.5, Number.NaN]) {
      assert.throws(() => native.sampleModeFor(bad), /numParams must be a non-negative integer/);
    }
  });
});

void describe('napi layer', () => {
  void it('finds the addon napi build produced for this platform, and explains a missing one', () => {
    assert.match(addonPath(), new RegExp(`spark-kernels\\.${platformTriple()}\\.node$`));
    assert.ok(existsSync(addonPath()));
    assert.match(native.version(), /^\d+\.\d+\.\d+$/);
    process.env.SPARK_KERNELS_ADDON = '/nonexistent/spark-kernels.node';
    try {
      assert.throws(
        () => loadNative(),
        (e: unknown) => e instanceof AddonNotBuiltError && /run build/.test(e.message),
      );
    } finally {
      delete process.env.SPARK_KERNELS_ADDON;
    }
    assert.equal(loadNative(), native);
  });

  void it('exports exactly the functions the generated index.d.ts declares (the build regenerates it)', () => {
    const dts = readFileSync(join(dirname(addonPath()), 'index.d.ts'), 'utf8');
    const declared = [...dts.matchAll(/^export declare function (\w+)\(/gm)].map((m) => m[1]).sort();
    const exported = Object.entries(native as unknown as Record<string, unknown>)
      .filter(([, v]) => typeof v === 'function')
      .map(([k]) => k)
      .filter((k) => !new RegExp(`^export declare class ${k}\\b`, 'm').test(dts))
      .sort();
    assert.ok(declared.length > 20, `only ${declared.length} functions declared`);
    assert.deepEqual(exported, declared);
  });

  void it('reads typed arrays by copy and rejects wrong element types', async () => {
    assert.equal(native.debugSum(new Float32Array([1, 2.5]), new Uint32Array([3, 4])), 10.5);
    assert.throws(
      () => native.debugSum(new Float64Array([1]) as unknown as Float32Array, new Uint32Array()),
      (e: unknown) => toKernelError(e) instanceof InvalidInputError && /Float32Array/.test(String(e)),
    );
    const input = new Float32Array([1, 2, 3]);
    const pending = native.debugScale(input, 2);
    input[0] = 100; // mutating after the call must not affect the result (copied at call time)
    const out = await pending;
    assert.deepEqual([...out], [2, 4, 6]);
    assert.notEqual(out.buffer, input.buffer);
  });

  void it('rejects bad async arguments through the promise', async () => {
    await assert.rejects(native.debugScale(new Float32Array(1), Number.NaN), /factor must be finite/);
  });

  for (const mode of ['sync', 'async', 'thread'] as const) {
    void it(`turns a ${mode} panic into a JS Error and keeps the process alive`, async () => {
      let err: unknown = null;
      try {
        await native.debugPanic(mode);
      } catch (e) {
        err = e;
      }
      const k = toKernelError(err);
      assert.ok(k instanceof NativePanicError, `got ${String(err)}`);
      assert.match(k.message, new RegExp(`deliberate test panic`));
      // still usable afterwards
      assert.equal(native.debugSum(new Float32Array([1]), new Uint32Array([1])), 2);
    });
  }

  void it('runs async work off the JS thread (timers keep firing)', async () => {
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const t0 = Date.now();
    await native.debugSleep(200);
    clearInterval(timer);
    assert.ok(Date.now() - t0 >= 190);
    assert.ok(ticks >= 10, `only ${ticks} timer ticks during a 200 ms native call`);
  });
});
