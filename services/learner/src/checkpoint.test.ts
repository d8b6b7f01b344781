// Checkpoint atomicity and verification with the real tiny native model on a real file system: a
// truncated file, a flipped byte, a missing manifest or a temporary directory left by a crashed write is
// never loaded; the loader falls back to the previous complete checkpoint and logs why; a `warmup`
// checkpoint named by latest.json is resumed from.
import assert from 'node:assert/strict';
import { cp, mkdtemp, open, readdir, rm, stat, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';

import { createLogger } from '@spark/runtime/logging';
import { Model } from '@spark/kernels';

import {
  latestCheckpoint,
  readTrainerState,
  removeCheckpointLeftovers,
  verifyCheckpoint,
  writeCheckpoint,
  type TrainerState,
} from './checkpoint.js';

function capture(): { logger: ReturnType<typeof createLogger>; lines: () => Record<string, unknown>[] } {
  const out: string[] = [];
  const logger = createLogger({
    service: 'checkpoint-test',
    level: 'warn',
    destination: new Writable({
      write: (c: Buffer, _e, cb) => {
        out.push(c.toString());
        cb();
      },
    }),
  });
  return {
    logger,
    lines: () =>
      out
        .join('')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

function state(step: number, version: number, phase = 'policy'): TrainerState {
  return {
    jobId: 'job-1',
    step,
    phase,
    policyVersion: version,
    optimizerSteps: version,
    rlOptimizerSteps: version,
    totalOptimizerSteps: null,
    schedule: { kind: 'constant', warmupRatio: 0, minLrRatio: 0 },
    learningRate: null,
    savedAt: new Date(0).toISOString(),
  };
}

/** A root with `warmup` (v1), step-1 (v2) and step-2 (v3), each from different weights. */
async function threeCheckpoints(): Promise<{ root: string; done: () => Promise<void> }> {
  const root = await mkdtemp(join(tmpdir(), 'spark-ckpt-'));
  for (const [i, [name, step, version]] of (
    [
      ['warmup', 1, 1],
      ['step-1', 1, 2],
      ['step-2', 2, 3],
    ] as const
  ).entries()) {
    const m = await Model.create('tiny', 10 + i);
    try {
      await writeCheckpoint(
        root,
        m,
        null,
        state(step, version, name === 'warmup' ? 'warmup' : 'policy'),
        name,
      );
    } finally {
      m.free();
    }
  }
  return { root, done: () => rm(root, { recursive: true, force: true }) };
}

async function flipByte(path: string, at: number): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, at);
    b[0] = (b[0] as number) ^ 0x01;
    await fh.write(b, 0, 1, at);
  } finally {
    await fh.close();
  }
}

describe('learner checkpoints: atomic, checksummed, verified on load', () => {
  it('writes a manifest with the size and SHA-256 of every file, and no temporary directory stays', async () => {
    const { root, done } = await threeCheckpoints();
    try {
      const manifest = await verifyCheckpoint(join(root, 'step-2'));
      const names = manifest.files.map((f) => f.name);
      for (const f of ['config.json', 'model.safetensors', 'optimizer.safetensors', 'trainer_state.json'])
        assert.ok(names.includes(f), `${f} in the manifest`);
      const w = manifest.files.find((f) => f.name === 'model.safetensors');
      assert.equal(w?.bytes, (await stat(join(root, 'step-2', 'model.safetensors'))).size);
      assert.deepEqual((await readdir(root)).sort(), ['latest.json', 'step-1', 'step-2', 'warmup']);
      const p = await latestCheckpoint(root, 'job-1');
      assert.equal(p?.name, 'step-2');
      assert.equal(p?.state.policyVersion, 3);
    } finally {
      await done();
    }
  });

  for (const [what, damage] of [
    ['a truncated weights file', (d: string) => truncate(join(d, 'model.safetensors'), 1000)],
    ['a flipped byte in the weights', (d: string) => flipByte(join(d, 'model.safetensors'), 4000)],
    ['a flipped byte in the optimizer state', (d: string) => flipByte(join(d, 'optimizer.safetensors'), 200)],
    ['a missing manifest (torn write)', (d: string) => rm(join(d, 'manifest.json'))],
    ['a missing weights file', (d: string) => rm(join(d, 'model.safetensors'))],
  ] as const) {
    it(`never loads a checkpoint with ${what}: falls back to the previous one and logs why`, async () => {
      const { root, done } = await threeCheckpoints();
      const log = capture();
      try {
        await damage(join(root, 'step-2'));
        await assert.rejects(verifyCheckpoint(join(root, 'step-2')));
        const p = await latestCheckpoint(root, 'job-1', log.logger);
        assert.equal(p?.name, 'step-1', 'the previous complete checkpoint');
        assert.equal(p?.state.policyVersion, 2);
        const warned = log.lines().map((l) => l.msg);
        assert.ok(warned.includes('checkpoint fails verification: not loaded'), JSON.stringify(warned));
        assert.ok(warned.includes("resuming from a checkpoint other than latest.json's"));
        // what is loaded is exactly what step-1 holds
        const loaded = await Model.load(p.dir, { optimizer: true });
        const ref = await Model.create('tiny', 11);
        assert.deepEqual(await loaded.getParams(), await ref.getParams());
        loaded.free();
        ref.free();
      } finally {
        await done();
      }
    });
  }

  it('never loads a temporary directory left by a crashed write, and removes it', async () => {
    const { root, done } = await threeCheckpoints();
    try {
      // a complete copy under a temporary name: a crash right before the rename into place
      await cp(join(root, 'step-2'), join(root, '.tmp-step-3-123-abcd'), { recursive: true });
      assert.equal((await readTrainerState(join(root, '.tmp-step-3-123-abcd'))).policyVersion, 3);
      assert.equal((await latestCheckpoint(root, 'job-1'))?.name, 'step-2');
      assert.deepEqual(await removeCheckpointLeftovers(root), ['.tmp-step-3-123-abcd']);
      assert.ok(!(await readdir(root)).some((n) => n.startsWith('.')));
    } finally {
      await done();
    }
  });

  it('resumes from `warmup` when latest.json names it, and never from another job', async () => {
    const { root, done } = await threeCheckpoints();
    try {
      await rm(join(root, 'step-1'), { recursive: true });
      await rm(join(root, 'step-2'), { recursive: true });
      await writeFile(join(root, 'latest.json'), JSON.stringify({ dir: 'warmup', step: 1 }) + '\n');
      const p = await latestCheckpoint(root, 'job-1');
      assert.equal(p?.name, 'warmup');
      assert.equal((await readTrainerState(p.dir)).phase, 'warmup');
      assert.equal(await latestCheckpoint(root, 'job-2'), null);
    } finally {
      await done();
    }
  });

  it('replacing a checkpoint of the same name keeps it whole (latest write wins)', async () => {
    const { root, done } = await threeCheckpoints();
    try {
      const m = await Model.create('tiny', 99);
      await writeCheckpoint(root, m, null, state(2, 4, 'reward'));
      const p = await latestCheckpoint(root, 'job-1');
      assert.equal(p?.name, 'step-2');
      assert.equal(p?.state.phase, 'reward');
      await verifyCheckpoint(p.dir);
      const loaded = await Model.load(p.dir);
      assert.deepEqual(await loaded.getParams(), await m.getParams());
      loaded.free();
      m.free();
      assert.ok(!(await readdir(root)).some((n) => n.startsWith('.')));
    } finally {
      await done();
    }
  });
});
