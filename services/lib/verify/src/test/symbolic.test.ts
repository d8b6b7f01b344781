// The symbolic rule's raw-parse cache (symbolic.ts): bounded, least recently used dropped first, and
// invisible in the verdicts (a check with a warm cache decides every pair as a fresh one does).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ComputeEngine } from '@cortex-js/compute-engine';

import { symbolicItem } from '../bench/workloads.js';
import { extractAnswer } from '../extract.js';
import { createSymbolicCheck, RawParses } from '../symbolic.js';

void test('the raw-parse cache holds at most its capacity and drops the least recently used', () => {
  const ce = new ComputeEngine();
  const cache = new RawParses(3);
  for (const s of ['x+1', 'x+2', 'x+3']) cache.get(ce, s);
  assert.equal(cache.misses, 3);
  cache.get(ce, 'x+1'); // now the most recently used
  assert.equal(cache.hits, 1);
  cache.get(ce, 'x+4'); // drops x+2, the least recently used
  assert.equal(cache.size, 3);
  cache.get(ce, 'x+1');
  cache.get(ce, 'x+3');
  assert.equal(cache.hits, 3);
  cache.get(ce, 'x+2');
  assert.equal(cache.misses, 5, 'x+2 was dropped and parsed again');
  // A string that does not parse is remembered as such.
  assert.equal(cache.get(ce, '\\frac{'), null);
  assert.equal(cache.get(ce, '\\frac{'), null);
  assert.equal(cache.hits, 4);
});

void test('a check with a warm parse cache decides every pair as a fresh check does', () => {
  const pairs = Array.from({ length: 300 }, () => symbolicItem()).map((it) => {
    const a = extractAnswer(it.response, {}).answer;
    assert.ok(a !== null);
    return [a, it.label] as const;
  });
  const warm = createSymbolicCheck();
  const first = pairs.map(([a, b]) => warm(a, b, 1e-6));
  // The second pass is served from the cache: the same verdicts, including the wrong answers' false.
  assert.deepEqual(
    pairs.map(([a, b]) => warm(a, b, 1e-6)),
    first,
  );
  const fresh = pairs.slice(0, 40).map(([a, b]) => createSymbolicCheck()(a, b, 1e-6));
  assert.deepEqual(fresh, first.slice(0, 40));
  assert.ok(first.includes(true) && first.includes(false));
});
