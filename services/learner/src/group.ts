// The learner group of a job: N ranks (processes, pods) that train one model together over a collective
// (@spark/kernels `Collective`, Gloo on CPU). Rank 0, the leader, is the job's only voice outward; each
// LearnTask it takes is broadcast to the followers as an envelope (the task and its verified groups, parsed
// through the contract's schemas on arrival). The group of a job rendezvouses in Redis under
// `<p>:job:<id>:dp:g<generation>`: after any failure (a rank died, hung past the time-out, or a step failed
// on some rank) every rank closes its Collective and moves to the next generation, where the group re-forms
// once all ranks are back. An idle leader broadcasts a heartbeat, so an idle follower's wait stays within
// the collective's time-out and a lost rank is noticed between tasks too.
import { hostname } from 'node:os';

import { FailedPreconditionError, InvalidArgumentError, UnavailableError } from '@spark/runtime';
import { jobKeys, parseJson, parseLearnTask, type LearnTask } from '@spark/contract';
import type { Logger } from '@spark/runtime/logging';
import type { Redis } from '@spark/runtime/redis';
import { Collective, type CollectiveOptions } from '@spark/kernels';
import { z } from 'zod';

/** How a rank connects (the real `Collective.connect`; a test may wrap it, e.g. to count). */
export type ConnectCollective = (o: CollectiveOptions) => Promise<Collective>;

export interface GroupConfig {
  readonly rank: number;
  readonly worldSize: number;
  /** ZeRO-1: each rank keeps and updates its slice of the AdamW state. */
  readonly zero: boolean;
  readonly timeoutMs: number;
  readonly formTimeoutMs: number;
  /** The address peers dial for this rank ('' = the hostname). */
  readonly host: string;
  readonly redisUrl: string;
}

/** The leader's state a follower must match before a task: its version, counters and weights' checksum. */
export interface LeaderState {
  readonly version: number;
  readonly optimizerSteps: number;
  readonly rlOptimizerSteps: number;
  readonly reference: boolean;
  readonly sha256: string;
}

/** What the leader broadcasts: a task (with the raw verified groups it read), or a heartbeat. */
export type Envelope =
  | { readonly kind: 'ping' }
  | {
      readonly kind: 'task';
      readonly task: LearnTask;
      readonly groups: string[];
      readonly leader: LeaderState;
    };

const MAX_GROUP_TEXT = 64 * 1024 * 1024;

const envelopeSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('ping') }),
  z.strictObject({
    kind: z.literal('task'),
    task: z.unknown(),
    groups: z.array(z.string().max(MAX_GROUP_TEXT)).max(1_000_000),
    leader: z.strictObject({
      version: z.number().int().min(0),
      optimizerSteps: z.number().int().min(0),
      rlOptimizerSteps: z.number().int().min(0),
      reference: z.boolean(),
      sha256: z.string().regex(/^[0-9a-f]{64}$/),
    }),
  }),
]);

export function encodeEnvelope(e: Envelope): Uint8Array {
  return Buffer.from(JSON.stringify(e), 'utf8');
}

/**
 * Parses an envelope from the leader: its own schema, then the task through the contract's (every bad field
 * listed) and the job it must belong to. A bad envelope is an InvalidArgumentError.
 */
export function decodeEnvelope(bytes: Uint8Array, jobId: string): Envelope {
  const raw = parseJson(
    Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8'),
    'group envelope',
  );
  const parsed = envelopeSchema.safeParse(raw);
  if (!parsed.success) {
    throw new InvalidArgumentError(
      `invalid learner group envelope for job ${jobId}`,
      parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`),
    );
  }
  const e = parsed.data;
  if (e.kind === 'ping') return e;
  const task = parseLearnTask(e.task);
  if (task.jobId !== jobId)
    throw new InvalidArgumentError(`group envelope carries a task of job ${task.jobId}, not ${jobId}`);
  return { kind: 'task', task, groups: e.groups, leader: e.leader };
}

/** Base key of a job's learner group (generation counter; rendezvous prefixes `<base>:g<n>`). */
export function groupKey(prefix: string, jobId: string): string {
  return `${jobKeys.job(prefix, jobId)}:dp`;
}

// Moves the generation past a failed one (never backwards): every rank that saw generation n fail lands on n+1.
const BUMP = `local g = tonumber(redis.call('GET', KEYS[1]) or '0')
local want = tonumber(ARGV[1]) + 1
if g < want then redis.call('SET', KEYS[1], want) return want end
return g`;

/** Deletes a formed generation's rendezvous keys (`<prefix>/rank_<r>`, …; they also expire on their own). */
async function deleteRendezvous(redis: Redis, prefix: string): Promise<void> {
  let cursor = '0';
  for (let i = 0; i < 1000; i++) {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}/*`, 'COUNT', 1000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
    if (cursor === '0') return;
  }
}

/** A learner-group failure: the step is not applied on any rank, and the group re-forms. */
export class GroupDivergedError extends FailedPreconditionError {}

/** Under ZeRO-1 a rank lost its slice of the AdamW state: the group resumes from the latest checkpoint. */
export class ZeroStateLostError extends FailedPreconditionError {}

export interface JobGroupOptions {
  readonly redis: Redis;
  readonly prefix: string;
  readonly jobId: string;
  readonly config: GroupConfig;
  readonly logger: Logger;
  readonly connect?: ConnectCollective;
  /** Called after every (re-)formation. */
  readonly onFormed?: (generation: number) => void;
}

/** One job's group membership on this rank: the formed Collective, re-formed under a new generation. */
export class JobGroup {
  private current: Collective | null = null;
  private gen = -1;
  private forming: Promise<Collective> | null = null;
  private closed = false;
  /**
   * A generation this rank saw fail whose bump did not reach Redis (an outage): the next formation bumps
   * first, so this rank does not re-join the failed generation while its peers wait on the next one.
   */
  private pendingBump: number | null = null;
  /** When the last collective operation of this rank ended (the leader's heartbeat clock). */
  lastOp = Date.now();

  constructor(private readonly options: JobGroupOptions) {}

  get generation(): number {
    return this.gen;
  }

  get formed(): boolean {
    return this.current !== null;
  }

  /** The formed Collective, forming it first (trying new generations) within formTimeoutMs. */
  ready(): Promise<Collective> {
    if (this.current) return Promise.resolve(this.current);
    if (this.closed)
      return Promise.reject(new FailedPreconditionError(`learner group of ${this.options.jobId} is closed`));
    this.forming ??= this.form().finally(() => {
      this.forming = null;
    });
    return this.forming;
  }

  /**
   * Breaks the group after a failure on this rank or a peer: closes the Collective (peers blocked in an
   * operation fail at once) and moves the generation on, where the group re-forms.
   */
  async fail(err: unknown): Promise<void> {
    const c = this.current;
    const gen = this.gen;
    this.current = null;
    if (!c) return;
    c.close();
    this.options.logger.warn(
      { job: this.options.jobId, generation: gen, err },
      'learner group broken; re-forming under the next generation',
    );
    await this.bump(gen).catch(() => this.owe(gen));
  }

  close(): void {
    this.closed = true;
    this.current?.close();
    this.current = null;
  }

  private base(): string {
    return groupKey(this.options.prefix, this.options.jobId);
  }

  private async bump(failed: number): Promise<number> {
    return Number(await this.options.redis.eval(BUMP, 1, `${this.base()}:gen`, String(failed)));
  }

  private owe(failed: number): void {
    this.pendingBump = Math.max(this.pendingBump ?? -1, failed);
  }

  private async form(): Promise<Collective> {
    const { config, logger, jobId, redis } = this.options;
    const connect = this.options.connect ?? ((o: CollectiveOptions) => Collective.connect(o));
    const deadline = Date.now() + config.formTimeoutMs;
    for (;;) {
      if (this.closed) throw new FailedPreconditionError(`learner group of ${jobId} is closed`);
      if (this.pendingBump !== null) {
        // Redis still down: this formation fails like the read below would, and the bump stays owed
        await this.bump(this.pendingBump);
        this.pendingBump = null;
      }
      const gen = Number((await redis.get(`${this.base()}:gen`)) ?? '0');
      const prefix = `${this.base()}:g${gen}`;
      try {
        const c = await connect({
          redisUrl: config.redisUrl,
          prefix,
          rank: config.rank,
          worldSize: config.worldSize,
          timeoutMs: config.timeoutMs,
          hostname: config.host || hostname(),
        });
        try {
          // every rank finished its rendezvous: the addresses are read, so a stale rank that joins this
          // generation later finds none and times out instead of dialling a member
          await c.barrier();
          if (config.rank === 0) await deleteRendezvous(redis, prefix);
        } catch (err) {
          c.close();
          throw err;
        }
        if (this.closed) {
          c.close();
          throw new FailedPreconditionError(`learner group of ${jobId} is closed`);
        }
        this.current = c;
        this.gen = gen;
        this.lastOp = Date.now();
        logger.info(
          { job: jobId, generation: gen, rank: config.rank, worldSize: config.worldSize },
          'learner group formed',
        );
        this.options.onFormed?.(gen);
        return c;
      } catch (err) {
        await this.bump(gen).catch(() => this.owe(gen));
        if (Date.now() >= deadline) {
          throw new UnavailableError(
            `learner group of job ${jobId} (rank ${config.rank} of ${config.worldSize}) did not form within ${config.formTimeoutMs} ms: ${err instanceof Error ? err.message : String(err)}`,
          );
        }
        logger.info(
          { job: jobId, generation: gen, err },
          'learner group not formed yet; trying the next generation',
        );
      }
    }
  }
}
