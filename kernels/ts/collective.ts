// Collective: one rank of a data-parallel group, over Gloo (kernels/src/collective: TCP full mesh, rendezvous
// in Redis). The learner group of a job holds one per rank; a failed group is replaced by a new one under a new
// `prefix` generation.
//
//   const c = await Collective.connect({ redisUrl, prefix: `spark:learner:${jobId}:g${gen}`, rank, worldSize,
//                                        timeoutMs: 60_000 });
//   const sum = await c.allreduceSum(new Float32Array([rank]));   // on every rank: 0 + 1 + … + (worldSize − 1)
//   await model.allreduceGrads(c);                                 // the model's gradient buffer, in place
//   c.close();
//
// Ordering: calls on one Collective run one at a time in call order (a FIFO queue here; model operations that
// take the Collective — Model.allreduceGrads, applyOptimizerSharded, gatherOptimizerState — join the same
// queue). Every rank must issue the same collectives in the same order.
//
// Failures reject with CollectiveError (named `code`, see errors.ts). The first failure breaks the group:
// later calls reject at once with COLLECTIVE_BROKEN. `close()` rejects queued and later calls with
// COLLECTIVE_CLOSED; a call already running finishes or fails within `timeoutMs`, then rejects with
// COLLECTIVE_CLOSED too. Closing (or the process dying) closes this rank's connections, so its peers fail
// with COLLECTIVE_PEER_LOST instead of waiting for their timeout.
import { hostname as osHostname } from 'node:os';
import { CollectiveError, InvalidInputError, toKernelError } from './errors.js';
import { loadNative } from './native.js';
import type { NativeCollectiveHandle, NativeCollectiveOptions } from './native.js';

export interface CollectiveOptions {
  /** redis://[[user]:password@]host:port[/db] — the rendezvous store (the cluster's Redis). */
  readonly redisUrl: string;
  /** Key prefix of this group generation, e.g. `spark:learner:<jobId>:g<gen>`. */
  readonly prefix: string;
  readonly rank: number;
  readonly worldSize: number;
  /** Bounds the rendezvous and every collective; past it: CollectiveError COLLECTIVE_TIMEOUT. */
  readonly timeoutMs: number;
  /** The address peers dial for this rank (default: os.hostname()); the port is ephemeral. */
  readonly hostname?: string;
}

/** Most ranks in a group, longest timeout (1 hour), largest broadcast (1 GiB). */
export const COLLECTIVE_LIMITS = Object.freeze({
  maxWorldSize: 4096,
  maxTimeoutMs: 3_600_000,
  maxBroadcastBytes: 1 << 30,
});

function parseRedisUrl(
  url: string,
): Pick<NativeCollectiveOptions, 'redisHost' | 'redisPort' | 'redisUser' | 'redisPassword' | 'redisDb'> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new InvalidInputError(`redisUrl is not a URL: ${JSON.stringify(url)}`);
  }
  if (u.protocol !== 'redis:') {
    throw new InvalidInputError(
      `redisUrl must be redis://… (TLS rediss:// is not supported here), got ${u.protocol}`,
    );
  }
  const path = u.pathname.replace(/^\//, '');
  const db = path === '' ? 0 : Number(path);
  if (!Number.isInteger(db) || db < 0 || db > 1 << 20)
    throw new InvalidInputError(`redisUrl: bad database ${path}`);
  return {
    redisHost: u.hostname.replace(/^\[(.*)\]$/, '$1') || '127.0.0.1',
    redisPort: u.port === '' ? 6379 : Number(u.port),
    redisUser: decodeURIComponent(u.username),
    redisPassword: decodeURIComponent(u.password),
    redisDb: db,
  };
}

function checkInt(x: unknown, what: string, min: number, max: number): number {
  if (typeof x !== 'number' || !Number.isInteger(x) || x < min || x > max) {
    throw new InvalidInputError(`${what} must be an integer in [${min}, ${max}], got ${String(x)}`);
  }
  return x;
}

export class Collective {
  readonly rank: number;
  readonly worldSize: number;
  readonly prefix: string;
  readonly #handle: NativeCollectiveHandle;
  #closed = false;
  #tail: Promise<unknown> = Promise.resolve();

  private constructor(handle: NativeCollectiveHandle, prefix: string) {
    this.#handle = handle;
    this.rank = handle.rank;
    this.worldSize = handle.worldSize;
    this.prefix = prefix;
  }

  /** Joins the group; resolves when every rank has connected (COLLECTIVE_TIMEOUT names the missing ranks). */
  static async connect(o: CollectiveOptions): Promise<Collective> {
    let native: NativeCollectiveOptions;
    try {
      const worldSize = checkInt(o.worldSize, 'worldSize', 1, COLLECTIVE_LIMITS.maxWorldSize);
      const rank = checkInt(o.rank, 'rank', 0, worldSize - 1);
      const timeoutMs = checkInt(o.timeoutMs, 'timeoutMs', 1, COLLECTIVE_LIMITS.maxTimeoutMs);
      if (typeof o.prefix !== 'string' || o.prefix.length === 0 || o.prefix.length > 512) {
        throw new InvalidInputError('prefix must be a string of 1..512 characters');
      }
      const hostname = o.hostname ?? osHostname();
      if (typeof hostname !== 'string' || hostname.length === 0 || hostname.length > 255) {
        throw new InvalidInputError('hostname must be a string of 1..255 characters');
      }
      native = { ...parseRedisUrl(o.redisUrl), prefix: o.prefix, rank, worldSize, timeoutMs, hostname };
    } catch (err) {
      throw toKernelError(err);
    }
    try {
      return new Collective(await loadNative().collectiveConnect(native), o.prefix);
    } catch (err) {
      throw toKernelError(err);
    }
  }

  /** True after `close()`. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Runs `op` with the native handle after every earlier call on this Collective has settled (used by Model's
   * collective operations too). Rejects with COLLECTIVE_CLOSED once closed.
   */
  run<T>(name: string, op: (h: NativeCollectiveHandle) => Promise<T>): Promise<T> {
    const closedError = (): CollectiveError =>
      new CollectiveError(
        `${name}: the collective (rank ${this.rank}, ${this.prefix}) was closed`,
        'COLLECTIVE_CLOSED',
      );
    if (this.#closed) return Promise.reject(closedError());
    const go = (): Promise<T> => (this.#closed ? Promise.reject(closedError()) : op(this.#handle));
    const run = this.#tail.then(go, go);
    this.#tail = run.catch(() => undefined);
    return run.catch((err: unknown) => {
      throw toKernelError(err);
    });
  }

  /** The root's bytes on every rank (the root passes data, the others null; the length travels first). */
  broadcastBytes(data: Uint8Array | null, root: number): Promise<Uint8Array> {
    try {
      checkInt(root, 'root', 0, this.worldSize - 1);
      if (root === this.rank) {
        if (!(data instanceof Uint8Array))
          throw new InvalidInputError('the root of a broadcast must give a Uint8Array');
        if (data.length > COLLECTIVE_LIMITS.maxBroadcastBytes) {
          throw new InvalidInputError(
            `broadcast of ${data.length} bytes exceeds ${COLLECTIVE_LIMITS.maxBroadcastBytes}`,
          );
        }
      }
    } catch (err) {
      return Promise.reject(toKernelError(err));
    }
    const d = root === this.rank ? data : null;
    return this.run('broadcastBytes', (h) => loadNative().collectiveBroadcast(h, d, root));
  }

  /** Elementwise sum across ranks (every rank passes the same length). */
  allreduceSum(data: Float32Array): Promise<Float32Array> {
    if (!(data instanceof Float32Array))
      return Promise.reject(new InvalidInputError('data must be a Float32Array'));
    return this.run('allreduceSum', (h) => loadNative().collectiveAllreduceF32(h, data));
  }

  allreduceSumF64(data: Float64Array): Promise<Float64Array> {
    if (!(data instanceof Float64Array))
      return Promise.reject(new InvalidInputError('data must be a Float64Array'));
    return this.run('allreduceSumF64', (h) => loadNative().collectiveAllreduceF64(h, data));
  }

  barrier(): Promise<void> {
    return this.run('barrier', (h) => loadNative().collectiveBarrier(h));
  }

  /** Leaves the group (idempotent): closes this rank's connections; queued and later calls reject. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    loadNative().collectiveClose(this.#handle);
  }
}
