// Tests of the seeded PRNG: reproducibility, independence of seeds and forks, and uniformity bounds.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { hash32, Rng } from './random.js';

void describe('Rng', () => {
  void it('reproduces a stream from a number or string seed', () => {
    const a = new Rng(42);
    const b = new Rng(42);
    const xs = Array.from({ length: 100 }, () => a.nextU32());
    assert.deepEqual(
      Array.from({ length: 100 }, () => b.nextU32()),
      xs,
    );
    assert.notDeepEqual(
      Array.from({ length: 10 }, () => new Rng('42').nextU32()),
      Array.from({ length: 10 }, () => new Rng(43).nextU32()),
    );
    assert.notEqual(new Rng(2 ** 40).nextU32(), new Rng(0).nextU32());
    assert.throws(() => new Rng(Number.NaN), RangeError);
  });

  void it('keeps its streams fixed across versions and machines (golden values)', () => {
    const r = new Rng(42);
    assert.deepEqual([r.nextU32(), r.nextU32(), r.nextU32()], [2837322924, 544945897, 479756282]);
    const s = new Rng('spark');
    assert.deepEqual([s.nextU32(), s.nextU32()], [1124095274, 2505707137]);
  });

  void it('draws integers uniformly and within bounds', () => {
    const r = new Rng(1);
    const counts = new Array<number>(10).fill(0);
    const n = 50000;
    for (let i = 0; i < n; i++) {
      const v = r.int(3, 12);
      assert.ok(v >= 3 && v <= 12);
      counts[v - 3]!++;
    }
    // chi-square with 9 dof: P(X > 30) < 0.001
    const expected = n / 10;
    const chi2 = counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
    assert.ok(chi2 < 30, `chi2 ${chi2}`);
    assert.throws(() => r.int(5, 4), RangeError);
  });

  void it('gives floats in [0,1) with the right mean, and bool with the right rate', () => {
    const r = new Rng('floats');
    let sum = 0;
    let trues = 0;
    const n = 40000;
    for (let i = 0; i < n; i++) {
      const x = r.next();
      assert.ok(x >= 0 && x < 1);
      sum += x;
      if (r.bool(0.3)) trues++;
    }
    assert.ok(Math.abs(sum / n - 0.5) < 0.01);
    assert.ok(Math.abs(trues / n - 0.3) < 0.012);
  });

  void it('shuffles, samples and forks deterministically', () => {
    const items = Array.from({ length: 20 }, (_, i) => i);
    const s = new Rng(5).shuffle(items);
    assert.deepEqual(
      [...s].sort((a, b) => a - b),
      items,
    );
    assert.notDeepEqual(s, items);
    const sample = new Rng(5).sample(items, 5);
    assert.equal(sample.length, 5);
    assert.deepEqual(
      [...sample].sort((a, b) => a - b),
      sample,
    );
    assert.equal(new Set(sample).size, 5);
    assert.equal(new Rng(5).sample(items, 50).length, 20);
    const parent = new Rng(9);
    assert.equal(parent.fork('a').nextU32(), new Rng(9).fork('a').nextU32());
    assert.notEqual(parent.fork('a').nextU32(), parent.fork('b').nextU32());
    assert.throws(() => parent.pick([]), RangeError);
  });

  void it('hashes strings stably', () => {
    assert.equal(hash32('spark'), hash32('spark'));
    assert.notEqual(hash32('spark'), hash32('Spark'));
    assert.ok(hash32('') >= 0 && hash32('x') < 2 ** 32);
  });
});
