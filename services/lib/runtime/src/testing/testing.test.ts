// The test kit's waiting primitives: `until` resolves with the first truthy value and times out with an
// error that names what was awaited and the last value; `expectUnchanged` passes only when the value stays
// equal for the whole window and fails as soon as it changes.
import assert from 'node:assert/strict';
import { AssertionError } from 'node:assert';
import { describe, it } from 'node:test';

import { expectUnchanged, testPrefix, until, UntilTimeoutError } from './index.js';

describe('until', () => {
  it('resolves with the first truthy value, evaluating the condition until then', async () => {
    let calls = 0;
    const value = await until(() => (++calls >= 3 ? { n: calls } : null), { intervalMs: 1 });
    assert.deepEqual(value, { n: 3 });
    assert.equal(calls, 3, 'not evaluated again after it held');
  });

  it('awaits an async condition and accepts any truthy value (not only true)', async () => {
    let calls = 0;
    const value = await until(async () => (++calls === 2 ? 'ready' : ''), { intervalMs: 1 });
    assert.equal(value, 'ready');
    assert.equal(await until(() => 7), 7, 'a condition true at once resolves at once');
  });

  it('times out with an error naming what was awaited and the last value', async () => {
    let calls = 0;
    const started = Date.now();
    const err = await until(() => (calls++, 0), {
      timeoutMs: 120,
      intervalMs: 10,
      message: 'the job to complete',
    }).then(
      () => assert.fail('resolved although the condition never held'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof UntilTimeoutError, `got ${String(err)}`);
    assert.ok(Date.now() - started >= 120, 'waited the whole time-out');
    assert.match(
      err.message,
      /^timed out after 120 ms waiting for the job to complete \(\d+ checks; last value: 0\)$/,
    );
    assert.equal(err.lastValue, 0);
    assert.equal(err.attempts, calls);
    assert.ok(calls >= 2, `evaluated more than once (${calls})`);

    const unnamed = await until(async () => null, { timeoutMs: 20 }).catch((e: unknown) => e);
    assert.ok(unnamed instanceof UntilTimeoutError);
    assert.match(unnamed.message, /waiting for a condition .*last value: null/, 'a default description');
  });

  it('evaluates the condition once more at the deadline, so a slow condition that holds is not a time-out', async () => {
    let calls = 0;
    // each evaluation takes longer than the whole time-out; the second one holds
    const value = await until(
      async () => {
        await new Promise((r) => setTimeout(r, 40));
        return ++calls === 2;
      },
      { timeoutMs: 10, intervalMs: 1 },
    ).catch((e: unknown) => e);
    assert.ok(value instanceof UntilTimeoutError, 'the first evaluation already passed the deadline');
    calls = 0;
    const ok = await until(
      async () => {
        await new Promise((r) => setTimeout(r, 40));
        return ++calls === 1;
      },
      { timeoutMs: 10 },
    );
    assert.equal(ok, true, 'one evaluation that outlasts the time-out but holds succeeds');
  });

  it('passes on an error thrown by the condition at once', async () => {
    let calls = 0;
    await assert.rejects(
      until(
        () => {
          calls++;
          throw new Error('broken condition');
        },
        { timeoutMs: 10_000 },
      ),
      /broken condition/,
    );
    assert.equal(calls, 1);
  });
});

describe('expectUnchanged', () => {
  it('resolves with the value when it stays deep-equal for the whole window', async () => {
    let reads = 0;
    const started = Date.now();
    const v = await expectUnchanged(
      async () => {
        reads++;
        return { state: 'queued', ids: [1, 2] }; // a fresh object each read: compared by value
      },
      { forMs: 100, intervalMs: 10 },
    );
    assert.deepEqual(v, { state: 'queued', ids: [1, 2] });
    assert.ok(Date.now() - started >= 100, 'watched the whole window');
    assert.ok(reads >= 3, `read repeatedly (${reads} reads)`);
  });

  it('fails as soon as the value changes, naming what changed, from what to what', async () => {
    let reads = 0;
    const started = Date.now();
    const err = await expectUnchanged(() => (++reads >= 3 ? 'failed' : 'waiting'), {
      forMs: 10_000,
      intervalMs: 5,
      message: 'the state of task-1',
    }).then(
      () => assert.fail('passed although the value changed'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof AssertionError, `got ${String(err)}`);
    assert.match(err.message, /^the state of task-1 changed after \d+ ms/);
    assert.match(err.message, /'waiting' → 'failed'/);
    assert.equal(err.actual, 'failed');
    assert.equal(err.expected, 'waiting');
    assert.ok(Date.now() - started < 5_000, 'failed at the change, not at the end of the window');
  });

  it('notices a change that happens only at the end of the window', async () => {
    const started = Date.now();
    await assert.rejects(
      expectUnchanged(() => Date.now() - started >= 80, { forMs: 100, intervalMs: 30 }),
      AssertionError,
    );
  });

  it('passes on an error thrown by the read', async () => {
    await assert.rejects(
      expectUnchanged(
        () => {
          throw new Error('unreadable');
        },
        { forMs: 50 },
      ),
      /unreadable/,
    );
  });
});

describe('testPrefix', () => {
  it('is unique per call and keeps a readable, key-safe form of the name', () => {
    const a = testPrefix('my test: one/two');
    const b = testPrefix('my test: one/two');
    assert.notEqual(a, b);
    assert.match(a, /^t-my-test-one-two-/);
    assert.doesNotMatch(a, /[ :/]/);
  });
});
