// The rollout worker's evaluation generators (JobService.Generate's worker side) on real tiny checkpoints
// and the real native sampler: greedy outputs equal the in-process generator's, a checkpoint is loaded
// once and reloaded when rewritten, the cache is bounded and idle entries are freed, and bad tasks and
// missing or unusable checkpoints are answered with an error result (not thrown, so not retried).
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { GenerateTaskResult } from '@spark/contract';
import { Model } from '@spark/kernels';

import { loadGenerator } from '@spark/method/checkpoint';
import { CheckpointGenerators, parseGenerateTask, type GenerateTaskReport } from './eval-generate.js';

const ok = (r: GenerateTaskResult) => {
  assert.ok(!('error' in r), JSON.stringify(r));
  return r;
};
const err = (r: GenerateTaskResult) => {
  assert.ok('error' in r, 'an error result');
  return r.error;
};

describe('CheckpointGenerators', () => {
  let dir: string;
  let a: string;
  let b: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-evalgen-'));
    a = join(dir, 'a');
    b = join(dir, 'b');
    for (const [path, seed] of [
      [a, 1],
      [b, 2],
    ] as const) {
      const m = await Model.create('tiny', seed);
      await m.save(path);
      m.free();
    }
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('answers with the in-process greedy outputs, loading a checkpoint once until it is rewritten', async () => {
    const gens = new CheckpointGenerators({ maxEntries: 2, idleMs: 60_000 });
    const reports: GenerateTaskReport[] = [];
    try {
      const prompts = ['1+2=?', '7*3=?', 'x'.repeat(5_000)];
      const task = { checkpoint: a, prompts, maxNewTokens: 12, tokenizer: '' };
      const r1 = ok(await gens.run(task, (r) => reports.push(r)));
      const local = await loadGenerator(a, { maxNewTokens: 12, batch: 8 });
      try {
        assert.deepEqual(r1.outputs, await local.generate(prompts));
      } finally {
        local.close();
      }
      assert.equal(r1.tooLong, 1); // the 5000-character prompt is past the tiny model's context
      assert.equal(r1.outputs[2], '');
      assert.equal(r1.checkpointDir, a);
      assert.match(r1.worker, new RegExp(`:${process.pid}$`));
      ok(await gens.run(task, (r) => reports.push(r)));
      assert.deepEqual(
        reports.map((r) => r.loaded),
        [true, false],
      );
      // a rewritten checkpoint (newer mtime) is loaded again, replacing the old entry
      const later = new Date(Date.now() + 5_000);
      await utimes(join(a, 'model.safetensors'), later, later);
      ok(await gens.run(task, (r) => reports.push(r)));
      assert.equal(reports.at(-1)?.loaded, true);
      assert.equal(gens.loaded.length, 1);
      // bounded: a second checkpoint fits, a third evicts the least recently used
      ok(await gens.run({ ...task, checkpoint: b }));
      assert.equal(gens.loaded.length, 2);
      ok(await gens.run({ ...task, checkpoint: b, tokenizer: 'char' }));
      assert.equal(gens.loaded.length, 2);
      assert.ok(gens.loaded.every((k) => k.startsWith(b)));
      assert.deepEqual(gens.pruneIdle(Date.now() + 120_000), [b, b]);
      assert.equal(gens.loaded.length, 0);
    } finally {
      gens.close();
    }
  });

  it('answers bad tasks and missing or unusable checkpoints with an error result', async () => {
    const gens = new CheckpointGenerators({ maxEntries: 1, idleMs: 60_000 });
    try {
      const base = { checkpoint: a, prompts: ['1+1=?'], maxNewTokens: 8, tokenizer: '' };
      assert.equal(typeof parseGenerateTask(base), 'object');
      assert.match(err(await gens.run({ ...base, prompts: [] })).message, /prompts/);
      assert.match(err(await gens.run({ ...base, checkpoint: 'rel/ckpt' })).message, /absolute path/);
      assert.match(err(await gens.run({ ...base, maxNewTokens: 0 })).message, /maxNewTokens/);
      assert.match(err(await gens.run(null)).message, /invalid GenerateTask/);
      const missing = err(await gens.run({ ...base, checkpoint: join(dir, 'nope') }));
      assert.equal(missing.code, 'not-found');
      assert.match(missing.message, /cannot load checkpoint .*nope: no config\.json and no latest\.json/);
      const broken = join(dir, 'broken');
      await rm(broken, { recursive: true, force: true });
      await mkdir(broken);
      await writeFile(join(broken, 'config.json'), '{"not": "a config"}');
      const bad = err(await gens.run({ ...base, checkpoint: broken }));
      assert.equal(bad.code, 'invalid-argument');
      assert.match(bad.message, /cannot load checkpoint/);
      const tok = err(await gens.run({ ...base, tokenizer: join(dir, 'no-tokenizer') }));
      assert.equal(tok.code, 'invalid-argument');
      assert.match(tok.message, /cannot load tokenizer/);
      const long = err(await gens.run({ ...base, maxNewTokens: 4_096 }));
      assert.match(long.message, /exceeds the model's context/);
    } finally {
      gens.close();
    }
  });

  it('with path roots, refuses paths outside them with one message whatever the reason', async () => {
    const allowed = join(dir, 'allowed');
    await mkdir(allowed, { recursive: true });
    const inside = join(allowed, 'ckpt');
    const m = await Model.create('tiny', 3);
    await m.save(inside);
    m.free();
    await symlink(b, join(allowed, 'escape'));
    const gens = new CheckpointGenerators({ maxEntries: 1, idleMs: 60_000, pathRoots: [allowed] });
    try {
      const base = { prompts: ['1+1=?'], maxNewTokens: 4, tokenizer: '' };
      ok(await gens.run({ ...base, checkpoint: inside }));
      const messages = new Set<string>();
      for (const path of [
        b,
        join(dir, 'missing'),
        join(allowed, 'escape'),
        join(allowed, '..', 'b'),
        '/etc',
      ]) {
        const e = err(await gens.run({ ...base, checkpoint: path }));
        assert.equal(e.code, 'invalid-argument', path);
        messages.add(e.message.replace(`"${path}"`, '"<path>"'));
      }
      assert.equal(messages.size, 1, [...messages].join('\n'));
      assert.match([...messages][0] ?? '', /below the rollout workers' allowed roots/);
      const tok = err(await gens.run({ ...base, checkpoint: inside, tokenizer: b }));
      assert.match(tok.message, /^tokenizer ".*" is not a readable path below/);
    } finally {
      gens.close();
    }
  });
});
