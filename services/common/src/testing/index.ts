// Test support shared by every package's tests: a real Redis to talk to (REDIS_URL, else the machine's
// 127.0.0.1:6379 when it answers, else a private redis-server started once per test process) and unique
// key prefixes so concurrent runs never collide.
import { redisAnswers, startPrivateRedis, uniquePrefix, type PrivateRedis } from '../redis/index.js';

let shared: Promise<string> | null = null;
let privateServer: PrivateRedis | null = null;

/** URL of a Redis that tests may use (always with a unique prefix from `testPrefix`). */
export function testRedisUrl(): Promise<string> {
  shared ??= (async () => {
    const fromEnv = process.env.REDIS_URL;
    if (fromEnv) return fromEnv;
    const local = 'redis://127.0.0.1:6379';
    if (await redisAnswers(local, 500)) return local;
    privateServer = await startPrivateRedis();
    process.once('beforeExit', () => void privateServer?.stop());
    return privateServer.url;
  })();
  return shared;
}

/** A unique key prefix for one test. */
export function testPrefix(name: string): string {
  return uniquePrefix(`t-${name.replace(/[^A-Za-z0-9]+/g, '-').slice(0, 24)}`);
}
