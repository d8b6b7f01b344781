// Test support shared by every package's tests: a real Redis to talk to (REDIS_URL, else the machine's
// 127.0.0.1:6379 when it answers, else a private redis-server started once per test process), unique
// key prefixes so concurrent runs never collide, and the two waiting primitives every test uses instead of
// hand-written polling loops and fixed sleeps:
//
//   until(condition, …)          waits for something to become true (bounded; a clear error on time-out)
//   expectUnchanged(read, …)     asserts that nothing happens over a window ("still queued", "not retried")
//
// Prefer awaiting a positive event that proves a negative (e.g. wait until a later task was processed,
// then assert the earlier one was not); use expectUnchanged where no such event exists.
import { AssertionError } from 'node:assert';
import { inspect, isDeepStrictEqual } from 'node:util';

import { redisAnswers, startPrivateRedis, uniquePrefix } from '../redis/index.js';

let shared: Promise<string> | null = null;

/**
 * URL of a Redis that tests may use (always with a unique prefix from `testPrefix`). Set
 * SPARK_TEST_PRIVATE_REDIS=1 to ignore REDIS_URL and :6379 and use a private redis-server, as on a CI
 * machine without a Redis.
 */
export function testRedisUrl(): Promise<string> {
  shared ??= (async () => {
    const forcePrivate = process.env.SPARK_TEST_PRIVATE_REDIS === '1';
    const fromEnv = process.env.REDIS_URL;
    if (fromEnv && !forcePrivate) return fromEnv;
    const local = 'redis://127.0.0.1:6379';
    if (!forcePrivate && (await redisAnswers(local, 500))) return local;
    const server = await startPrivateRedis();
    // The server must not keep the test process alive: node:test waits for the event loop to empty
    // before a file ends, so a referenced child would hang every file that used it until the file
    // time-out. Unreferenced, it dies with the process ('exit' handler, and setpriv's death signal).
    server.unref();
    return server.url;
  })();
  return shared;
}

/** A unique key prefix for one test. */
export function testPrefix(name: string): string {
  return uniquePrefix(`t-${name.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 24)}`);
}

/** A value `if (v)` accepts. */
export type Truthy<T> = Exclude<T, false | null | undefined | 0 | 0n | ''>;

export interface UntilOptions {
  /**
   * Give up after this many milliseconds (default 30 000). Make it generous: it bounds a failing test, it
   * is not the expected time, and a loaded machine is many times slower than an idle one.
   */
  timeoutMs?: number;
  /** Pause between two evaluations of the condition, in milliseconds (default 25). */
  intervalMs?: number;
  /** What is awaited, for the time-out error ("the task to be processed"). */
  message?: string;
}

/** Thrown by `until` when its condition stayed falsy for the whole time-out. */
export class UntilTimeoutError extends Error {
  constructor(
    readonly what: string,
    readonly timeoutMs: number,
    readonly attempts: number,
    readonly lastValue: unknown,
  ) {
    super(
      `timed out after ${timeoutMs} ms waiting for ${what} ` +
        `(${attempts} checks; last value: ${describeValue(lastValue)})`,
    );
    this.name = 'UntilTimeoutError';
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function describeValue(v: unknown): string {
  return inspect(v, { depth: 3, breakLength: Infinity, maxArrayLength: 20, maxStringLength: 400 });
}

/**
 * Evaluates `condition` until it returns (or resolves to) a truthy value, and resolves with that value.
 * Throws an UntilTimeoutError naming `message` and the last value after `timeoutMs`; an error thrown by
 * the condition itself is passed on at once. The condition is evaluated once more at the deadline, so a
 * slow evaluation never turns success into a time-out.
 */
export async function until<T>(
  condition: () => T | Promise<T>,
  options: UntilOptions = {},
): Promise<Truthy<T>> {
  const timeoutMs = options.timeoutMs ?? 30_000;
  const intervalMs = options.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  let attempts = 0;
  for (;;) {
    const value = await condition();
    attempts++;
    if (value) return value as Truthy<T>;
    const left = deadline - Date.now();
    if (left <= 0) throw new UntilTimeoutError(options.message ?? 'a condition', timeoutMs, attempts, value);
    await sleep(Math.min(intervalMs, left));
  }
}

export interface ExpectUnchangedOptions {
  /** How long the value must stay the same, in milliseconds. */
  forMs: number;
  /** Pause between two reads, in milliseconds (default 25). */
  intervalMs?: number;
  /** What must not change, for the assertion error ("job b stays queued"). */
  message?: string;
}

/**
 * Reads a value, then keeps reading it for `forMs`, and throws an AssertionError as soon as a read is not
 * deep-equal to the first one. Resolves with the (unchanged) value. This is the honest form of
 * `sleep(x); assert(nothing happened)`: it checks the whole window, not one instant at its end, and it
 * fails as soon as something happens. It cannot prove that nothing happens after the window: choose a
 * window several times longer than whatever would make the value change (a poll interval, a back-off).
 */
export async function expectUnchanged<T>(
  read: () => T | Promise<T>,
  options: ExpectUnchangedOptions,
): Promise<T> {
  const intervalMs = options.intervalMs ?? 25;
  const started = Date.now();
  const first = await read();
  const what = options.message ?? 'the value';
  for (;;) {
    const left = started + options.forMs - Date.now();
    if (left <= 0) break;
    await sleep(Math.min(intervalMs, left));
    const now = await read();
    if (!isDeepStrictEqual(now, first)) {
      throw new AssertionError({
        message:
          `${what} changed after ${Date.now() - started} ms (expected unchanged for ${options.forMs} ms): ` +
          `${describeValue(first)} → ${describeValue(now)}`,
        actual: now,
        expected: first,
        operator: 'expectUnchanged',
      });
    }
  }
  return first;
}

export { findS3Server, s3Skip, startTestS3, VERSITYGW_VERSION, type TestS3 } from './s3.js';
