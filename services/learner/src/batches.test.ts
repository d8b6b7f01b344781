// Batch building, pure (no Redis, no model): GRPO sequences with their group's advantages, stale groups
// dropped, bad sequences skipped; SFT sequences; micro-batches; the deterministic cut.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import type { VerifiedGroup } from '@spark/contract';

import {
  grpoSequences,
  microBatches,
  optimizerBatches,
  responseTokenCount,
  sftSequences,
  splitByTokens,
  tokenCount,
} from './batches.js';
import { groupAdvantages, prng } from './grpo.js';

function group(id: string, version: number, rewards: (0 | 1)[], prompt = [5, 6], len = 3): VerifiedGroup {
  return {
    groupId: id,
    prompt: { id, kind: 'problem', text: 'q', label: '1' } as unknown as VerifiedGroup['prompt'],
    promptTokens: prompt,
    policyVersion: version,
    responses: rewards.map((reward, i) => ({
      text: 'r',
      tokens: Array.from({ length: len }, (_, k) => 10 + i + k),
      logprobs: [],
      finish: 'stop' as const,
      reward,
      extracted: null,
      reason: '',
    })),
  };
}

const seq = (len: number, tag = 0) => ({
  tokens: Uint32Array.from({ length: len }, () => tag),
  promptLen: 1,
});
const opts = { version: 2, vocabSize: 64, maxLen: 32, maxSequences: 100, taskId: '1/policy' };

describe('grpoSequences', () => {
  it('gives every response its own group’s advantage and drops stale groups', () => {
    const built = grpoSequences(
      [group('a', 2, [1, 0, 0, 1]), group('b', 2, [1, 1, 1]), group('old', 1, [1, 0]), group('c', 2, [0, 1])],
      opts,
    );
    assert.equal(built.staleGroups, 1);
    assert.equal(built.skipped, 0);
    assert.equal(built.sequences.length, 4 + 3 + 2);
    const adv = built.sequences.map((s) => s.advantage);
    assert.deepEqual(adv.slice(0, 4), groupAdvantages([1, 0, 0, 1]));
    assert.ok(adv[0]! > 0 && adv[1]! < 0, 'correct above, wrong below the group mean');
    assert.deepEqual(adv.slice(4, 7), [0, 0, 0], 'all-equal rewards: no signal');
    assert.deepEqual(adv.slice(7), groupAdvantages([0, 1]));
    // per group, the advantages are centred: they sum to zero
    assert.ok(Math.abs(adv.slice(0, 4).reduce((a, b) => a + b, 0)) < 1e-9);
    assert.deepEqual([...built.sequences[0]!.tokens], [5, 6, 10, 11, 12]);
    assert.equal(built.sequences[0]!.promptLen, 2);
  });

  it('skips sequences the model cannot take and bounds the task', () => {
    const oov = group('x', 2, [1, 0], [5, 99]);
    const long = group('y', 2, [1, 0], [5], 40);
    const empty = group('z', 2, [1], [], 2);
    const built = grpoSequences([oov, long, empty, group('ok', 2, [1, 0])], opts);
    assert.equal(built.skipped, 5);
    assert.equal(built.sequences.length, 2);
    assert.throws(
      () => grpoSequences([group('a', 2, [1, 0, 1]), group('b', 2, [0, 1])], { ...opts, maxSequences: 4 }),
      /more than 4 sequences/,
    );
  });
});

describe('sftSequences', () => {
  it('renders prompt + target + EOS and skips prompts as long as the context', () => {
    const built = sftSequences(
      [
        { prompt: '1+1', target: '2' },
        { prompt: 'x'.repeat(200), target: 'y' },
      ],
      64,
      '0/warmup',
    );
    assert.equal(built.sequences.length, 1);
    assert.equal(built.skipped, 1);
    const s = built.sequences[0]!;
    assert.ok(s.promptLen > 0 && s.tokens.length > s.promptLen);
    assert.throws(() => sftSequences([{ prompt: 1 } as never], 64, '0/warmup'), /prompt and target/);
  });
});

describe('microBatches', () => {
  it('cuts consecutive slices of at most microBatchSize, every sequence once, in order', () => {
    const rand = prng(42);
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + Math.floor(rand() * 40);
      const size = 1 + Math.floor(rand() * 8);
      const mb = Array.from({ length: n }, (_, i) => seq(1 + Math.floor(rand() * 50), i));
      const out = microBatches(mb, size);
      assert.equal(out.length, Math.ceil(n / size));
      for (const b of out.slice(0, -1)) assert.equal(b.length, size);
      assert.deepEqual(out.flat(), mb, 'the minibatch order is kept (it fixes the float sums)');
      assert.equal(
        out.map(tokenCount).reduce((x, y) => x + y, 0),
        tokenCount(mb),
      );
    }
    assert.deepEqual(microBatches([], 4), []);
    assert.deepEqual(microBatches([seq(3)], 0).length, 1, 'a size below 1 counts as 1');
  });
});

describe('optimizerBatches', () => {
  it('shuffles deterministically by seed, step and phase, then cuts minibatches of micro-batches', () => {
    const sequences = Array.from({ length: 10 }, (_, i) => seq(1 + i, i));
    const cut = { seed: 11, step: 3, phase: 'policy', miniBatchSize: 4, microBatchSize: 2 };
    const a = optimizerBatches(sequences, cut);
    assert.deepEqual(optimizerBatches(sequences, cut), a);
    assert.deepEqual(
      a.map((mb) => mb.map((m) => m.length)),
      [[2, 2], [2, 2], [2]],
    );
    assert.equal(new Set(a.flat(2)).size, 10);
    const other = optimizerBatches(sequences, { ...cut, step: 4 });
    assert.notDeepEqual(
      other.flat(2).map((s) => s.tokens[0]),
      a.flat(2).map((s) => s.tokens[0]),
    );
  });
});

describe("splitByTokens (the learner group's shares)", () => {
  it('balances tokens over the ranks, keeps every sequence once and the minibatch order inside a share', () => {
    const mb = [seq(10, 0), seq(3, 1), seq(8, 2), seq(7, 3), seq(2, 4), seq(6, 5)];
    const shares = splitByTokens(mb, 2);
    assert.equal(shares.length, 2);
    // longest first to the least-loaded rank: 10→r0, 8→r1, 7→r1, 6→r0, 3→r1, 2→r0 (18 tokens each)
    assert.deepEqual(
      shares.map((s) => s.map((x) => x.tokens[0])),
      [
        [0, 4, 5],
        [1, 2, 3],
      ],
    );
    const loads = shares.map(tokenCount);
    assert.equal(loads[0]! + loads[1]!, tokenCount(mb));
    assert.deepEqual(loads, [18, 18]);
    assert.deepEqual(new Set(shares.flat()), new Set(mb));
    assert.equal(shares.flat().length, mb.length);
  });

  it('is deterministic and a single rank gets the whole minibatch in order', () => {
    const rand = prng(7);
    const mb = Array.from({ length: 40 }, (_, i) => seq(1 + Math.floor(rand() * 30), i));
    assert.deepEqual(splitByTokens(mb, 3), splitByTokens(mb, 3));
    assert.deepEqual(splitByTokens(mb, 1), [mb]);
    const loads = splitByTokens(mb, 3).map(tokenCount);
    const max = Math.max(...mb.map((s) => s.tokens.length));
    assert.ok(Math.max(...loads) - Math.min(...loads) <= max, `within one sequence: ${loads.join(', ')}`);
  });

  it('leaves ranks empty when there are fewer sequences than ranks; the response tokens still add up', () => {
    const mb = [seq(5, 0), seq(9, 1)];
    const shares = splitByTokens(mb, 4);
    assert.deepEqual(
      shares.map((s) => s.length),
      [1, 1, 0, 0],
    );
    assert.equal(shares[0]?.[0]?.tokens.length, 9, 'the longest goes to rank 0');
    assert.deepEqual(splitByTokens([], 3), [[], [], []]);
    assert.equal(
      shares.reduce((n, s) => n + responseTokenCount(s), 0),
      responseTokenCount(mb),
    );
    assert.equal(responseTokenCount(mb), 4 + 8);
  });

  it('rejects a world size below 1', () => {
    assert.throws(() => splitByTokens([seq(3)], 0), /ranks must be ≥ 1/);
  });
});
