// Unit tests of the cluster evaluation's request splitting.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { pieces } from './cluster.js';

describe('pieces', () => {
  it('splits a call into at most batch prompts each and at least in-flight pieces', () => {
    assert.deepEqual(pieces(0, 4, 4), []);
    assert.deepEqual(pieces(3, 4, 4), [
      [0, 1],
      [1, 2],
      [2, 3],
    ]);
    assert.deepEqual(pieces(8, 4, 4), [
      [0, 2],
      [2, 4],
      [4, 6],
      [6, 8],
    ]);
    const p = pieces(100, 8, 2);
    assert.equal(p.length, 13);
    assert.ok(p.every(([s, e]) => e - s >= 1 && e - s <= 8));
    assert.equal(p.at(-1)?.[1], 100);
  });
});
