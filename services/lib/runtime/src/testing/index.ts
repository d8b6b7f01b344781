// Test support shared by every package's tests: a real Redis to talk to (REDIS_URL, else the machine's
// 127.0.0.1:6379 when it answers, else a private redis-server started once per test process) and unique
// key prefixes so concurrent runs never collide.
import { redisAnswers, startPrivateRedis, uniquePrefix } from '../redis/index.js';

let shared: Promise<string> | null = null;

/** URL of a Redis that tests may use (always with a unique prefix from `testPrefix`). */
export function testRedisUrl(): Promise<string> {
  shared ??= (async () => {
    const fromEnv = process.env.REDIS_URL;
    if (fromEnv) return fromEnv;
    const local = 'redis://127.0.0.1:6379';
    if (await redisAnswers(local, 500)) return local;
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
