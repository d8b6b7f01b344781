// Device selection through the real addon on a machine without CUDA (CI's, the developers'): 'cpu' is the
// default and works; 'cuda:N' is refused at create/load time with CudaUnavailableError naming the missing
// driver library (never a crash); malformed devices are InvalidInputErrors; cudaProbe reports what is missing.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import {
  CudaUnavailableError,
  cudaProbe,
  InvalidInputError,
  KernelError,
  loadNative,
  Model,
  parseDevice,
} from './index.js';

const probe = cudaProbe();
const noDriver = probe.driver.found === null;

void describe('device selection', () => {
  void it('parses cpu and cuda:N and refuses anything else', () => {
    assert.equal(parseDevice('cpu'), 'cpu');
    assert.equal(parseDevice('cuda:0'), 'cuda:0');
    assert.equal(parseDevice('cuda:1023'), 'cuda:1023');
    for (const bad of ['', 'gpu', 'cuda', 'cuda:', 'cuda:01', 'cuda:1024', 'cuda:-1', 'CUDA:0', 'cuda:0 ']) {
      assert.throws(() => parseDevice(bad), InvalidInputError, bad);
    }
  });

  void it('creates on cpu by default and when asked for cpu', async () => {
    const a = await Model.create('tiny', 1);
    const b = await Model.create('tiny', 1, { device: 'cpu' });
    assert.deepEqual(await a.getParams(), await b.getParams());
    a.free();
    b.free();
  });

  void it('refuses a malformed device before any work, also through the raw binding', async () => {
    await assert.rejects(Model.create('tiny', 1, { device: 'cuda' as 'cpu' }), InvalidInputError);
    const native = loadNative();
    const cfg = native.presetConfig('tiny');
    assert.ok(cfg);
    await assert.rejects(native.createModel(cfg, 1, 'cuda:x'), (e: Error) => {
      assert.equal((e as { code?: string }).code, 'ERR_SPARK_INVALID_INPUT');
      assert.match(e.message, /'cpu' or 'cuda:N'/);
      return true;
    });
  });

  void it('a cuda model without a driver is a CudaUnavailableError naming libcuda.so.1, at create and load', async (t) => {
    if (!noDriver) {
      t.skip('this machine has a CUDA driver');
      return;
    }
    await assert.rejects(Model.create('tiny', 1, { device: 'cuda:0' }), (e: Error) => {
      assert.ok(e instanceof CudaUnavailableError && e instanceof KernelError, String(e));
      assert.equal(e.code, 'ERR_SPARK_CUDA_UNAVAILABLE');
      assert.match(e.message, /^cuda:0 is unavailable: CUDA driver library not found/);
      assert.match(e.message, /libcuda\.so\.1/);
      return true;
    });
    const dir = await mkdtemp(join(tmpdir(), 'spark-device-'));
    try {
      const m = await Model.create('tiny', 2);
      await m.save(dir);
      m.free();
      await assert.rejects(Model.load(dir, { device: 'cuda:3' }), (e: Error) => {
        assert.ok(e instanceof CudaUnavailableError, String(e));
        assert.match(e.message, /^cuda:3 is unavailable: .*libcuda\.so\.1/);
        return true;
      });
      // the same checkpoint loads on the CPU
      const back = await Model.load(dir, { device: 'cpu' });
      back.free();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  void it('cudaProbe says what is missing and where it looked', async (t) => {
    assert.equal(typeof probe.driver.what, 'string');
    for (const lib of [probe.driver, probe.nvrtc, probe.cublasLt]) {
      assert.ok((lib.found === null) !== (lib.error === null), `${lib.what}: exactly one of found/error`);
    }
    if (!noDriver) {
      t.skip('this machine has a CUDA driver');
      return;
    }
    assert.match(probe.driver.error ?? '', /libcuda\.so\.1/);
    assert.deepEqual(probe.devices, []);
    assert.equal(probe.driverVersion, null);
    // a directory named by SPARK_CUDA_LIB_DIR is searched first: a broken libcuda.so.1 there is named
    const dir = await mkdtemp(join(tmpdir(), 'spark-cudalib-'));
    const saved = process.env.SPARK_CUDA_LIB_DIR;
    try {
      await writeFile(join(dir, 'libcuda.so.1'), 'not a library');
      process.env.SPARK_CUDA_LIB_DIR = dir;
      const p = cudaProbe();
      assert.deepEqual(p.libDirs, [dir]);
      assert.match(p.driver.error ?? '', new RegExp(`${join(dir, 'libcuda.so.1')} could not be loaded`));
    } finally {
      if (saved === undefined) delete process.env.SPARK_CUDA_LIB_DIR;
      else process.env.SPARK_CUDA_LIB_DIR = saved;
      await rm(dir, { recursive: true, force: true });
    }
  });
});
