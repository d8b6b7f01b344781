// The job store: every job's state and history in Redis (keys in @spark/contract jobKeys), so a
// coordinator restart loses nothing. A job is a hash (spec, state, step, policyVersion, message, times,
// the event sequence number and the driver's resume cursor), an event stream (XADD MAXLEN ~), an entry
// in the index ZSET, and — while waiting — an entry in the pending LIST; running jobs are in the active
// SET that workers follow. State changes and their STATE events are written by one Lua script, atomically
// and only from an expected state, so a cancellation racing the scheduler or the driver has one winner.
import type { Redis } from 'ioredis';

import { NotFoundError } from '@spark/runtime';
import {
  announceActiveChange,
  decodeJobOwner,
  decodeJobSpec,
  encodeJobSpec,
  jobKeys,
  jobOwnerSchema,
} from '@spark/contract';
import {
  JobEvent,
  JobEventType,
  JobState,
  jobStateFromJSON,
  jobStateToJSON,
  Phase,
  type JobSpec,
  type JobStatus,
} from '@spark/protocol';

/** Terminal states: nothing happens to the job afterwards. */
export const TERMINAL_STATES: ReadonlySet<JobState> = new Set([
  JobState.JOB_STATE_SUCCEEDED,
  JobState.JOB_STATE_FAILED,
  JobState.JOB_STATE_CANCELLED,
]);

export function isTerminal(state: JobState): boolean {
  return TERMINAL_STATES.has(state);
}

/** Longest message kept on a job or an event. */
export const MAX_MESSAGE_CHARS = 2_000;

/** The event fields a writer supplies (seq and time are assigned by the store). */
export interface EventInput {
  readonly type: JobEventType;
  readonly state: JobState;
  readonly step: number;
  readonly phase?: Phase;
  readonly metrics?: Readonly<Record<string, number>>;
  readonly message?: string;
}

/** A stored event with the stream entry id it came from (WatchJob resumes after it). */
export interface StoredEvent {
  readonly id: string;
  readonly event: JobEvent;
}

// KEYS: job hash, events stream. ARGV: maxlen, event JSON, allowed current states ("" = any, else a
// comma list), then field/value pairs to HSET. Returns the new seq, or -1 when the job does not exist,
// or -2 when its state is not an allowed one.
const TRANSITION_LUA = `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return -1 end
if ARGV[3] ~= '' then
  local ok = false
  for s in string.gmatch(ARGV[3], '[^,]+') do if s == state then ok = true end end
  if not ok then return -2 end
end
if #ARGV > 3 then redis.call('HSET', KEYS[1], unpack(ARGV, 4)) end
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[1], '*', 'seq', seq, 'e', ARGV[2])
return seq
`;

type TransitionRedis = Redis & {
  sparkTransition(hash: string, events: string, ...args: (string | number)[]): Promise<number>;
};

function clip(text: string): string {
  return text.length > MAX_MESSAGE_CHARS ? `${text.slice(0, MAX_MESSAGE_CHARS - 1)}…` : text;
}

function finiteMetrics(m: Readonly<Record<string, number>> | undefined): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(m ?? {})) if (Number.isFinite(v)) out[k] = v;
  return out;
}

export class JobStore {
  private readonly redis: TransitionRedis;

  constructor(
    redis: Redis,
    readonly prefix: string,
    private readonly eventsMaxLen: number,
  ) {
    if (!('sparkTransition' in redis)) {
      redis.defineCommand('sparkTransition', { numberOfKeys: 2, lua: TRANSITION_LUA });
    }
    this.redis = redis as TransitionRedis;
  }

  /** Creates a QUEUED job of `owner` (hash, indexes, STATE event) and appends it to the pending list. */
  async create(jobId: string, spec: JobSpec, owner: string, now = Date.now()): Promise<JobStatus> {
    jobOwnerSchema.parse(owner);
    const key = jobKeys.job(this.prefix, jobId);
    const created = await this.redis.hsetnx(key, 'state', jobStateToJSON(JobState.JOB_STATE_QUEUED));
    if (created !== 1) throw new Error(`job ${jobId} already exists`);
    await this.redis
      .multi()
      .hset(key, {
        spec: encodeJobSpec(spec),
        owner,
        step: 0,
        policyVersion: 0,
        message: '',
        createdAtMs: now,
        updatedAtMs: now,
        seq: 0,
      })
      .zadd(jobKeys.all(this.prefix), now, jobId)
      .zadd(jobKeys.owned(this.prefix, owner), now, jobId)
      .exec();
    await this.event(jobId, {
      type: JobEventType.JOB_EVENT_TYPE_STATE,
      state: JobState.JOB_STATE_QUEUED,
      step: 0,
      message: 'queued',
    });
    await this.redis.rpush(jobKeys.pending(this.prefix), jobId);
    return (await this.get(jobId)) as JobStatus;
  }

  /** The job's status, or null when unknown. */
  async get(jobId: string): Promise<JobStatus | null> {
    const h = await this.redis.hgetall(jobKeys.job(this.prefix, jobId));
    return h.state ? statusOf(jobId, h) : null;
  }

  /** The job's status; NotFoundError when unknown. */
  async require(jobId: string): Promise<JobStatus> {
    const s = await this.get(jobId);
    if (!s) throw new NotFoundError(`job ${jobId} not found`);
    return s;
  }

  /** The newest `limit` jobs (of `owner` when given), newest first. */
  async list(limit: number, owner?: string): Promise<JobStatus[]> {
    const index = owner === undefined ? jobKeys.all(this.prefix) : jobKeys.owned(this.prefix, owner);
    const ids = await this.redis.zrevrange(index, 0, limit - 1);
    if (ids.length === 0) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hgetall(jobKeys.job(this.prefix, id));
    const rows = (await pipe.exec()) ?? [];
    const out: JobStatus[] = [];
    ids.forEach((id, i) => {
      const h = rows[i]?.[1] as Record<string, string> | undefined;
      if (h?.state) out.push(statusOf(id, h));
    });
    return out;
  }

  /** Counts of the newest `limit` jobs by state (for the jobs gauge). */
  async countByState(limit = 1_000): Promise<Map<JobState, number>> {
    const ids = await this.redis.zrevrange(jobKeys.all(this.prefix), 0, limit - 1);
    const counts = new Map<JobState, number>();
    if (ids.length === 0) return counts;
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hget(jobKeys.job(this.prefix, id), 'state');
    for (const row of (await pipe.exec()) ?? []) {
      if (typeof row[1] !== 'string') continue;
      const s = jobStateFromJSON(row[1]);
      counts.set(s, (counts.get(s) ?? 0) + 1);
    }
    return counts;
  }

  /**
   * Moves the job to `to` (when its state is one of `from`; any when empty), setting the extra hash
   * fields, and appends the STATE event. Returns false when the job was not in an allowed state.
   */
  async transition(
    jobId: string,
    to: JobState,
    from: readonly JobState[],
    options: { message?: string; step?: number; fields?: Record<string, string | number> } = {},
  ): Promise<boolean> {
    const now = Date.now();
    const message = clip(options.message ?? '');
    const fields: Record<string, string | number> = {
      ...(options.fields ?? {}),
      state: jobStateToJSON(to),
      message,
      updatedAtMs: now,
    };
    const step =
      options.step ?? Number((await this.redis.hget(jobKeys.job(this.prefix, jobId), 'step')) ?? 0);
    const seq = await this.write(
      jobId,
      { type: JobEventType.JOB_EVENT_TYPE_STATE, state: to, step, message },
      from.map((s) => jobStateToJSON(s)).join(','),
      fields,
      now,
    );
    if (seq === -1) throw new NotFoundError(`job ${jobId} not found`);
    return seq > 0;
  }

  /** Appends a non-state event (PHASE, EVAL, CHECKPOINT) and optionally updates hash fields. */
  async event(
    jobId: string,
    input: EventInput,
    fields: Record<string, string | number> = {},
  ): Promise<number> {
    const now = Date.now();
    const seq = await this.write(jobId, input, '', { ...fields, updatedAtMs: now }, now);
    if (seq === -1) throw new NotFoundError(`job ${jobId} not found`);
    return seq;
  }

  private async write(
    jobId: string,
    input: EventInput,
    allowed: string,
    fields: Record<string, string | number>,
    now: number,
  ): Promise<number> {
    const ev = JobEvent.toJSON({
      jobId,
      seq: 0,
      type: input.type,
      state: input.state,
      step: input.step,
      phase: input.phase ?? Phase.PHASE_UNSPECIFIED,
      metrics: finiteMetrics(input.metrics),
      message: clip(input.message ?? ''),
      timeMs: now,
    });
    const pairs = Object.entries(fields).flatMap(([k, v]) => [k, String(v)]);
    return this.redis.sparkTransition(
      jobKeys.job(this.prefix, jobId),
      jobKeys.events(this.prefix, jobId),
      this.eventsMaxLen,
      JSON.stringify(ev),
      allowed,
      ...pairs,
    );
  }

  /** Sets hash fields without an event (progress counters, the resume cursor). */
  async setFields(jobId: string, fields: Record<string, string | number>): Promise<void> {
    await this.redis.hset(jobKeys.job(this.prefix, jobId), { ...fields, updatedAtMs: Date.now() });
  }

  async getField(jobId: string, field: string): Promise<string | null> {
    return this.redis.hget(jobKeys.job(this.prefix, jobId), field);
  }

  /** Events after stream entry `afterId` ("-" = from the start), at most `count`. */
  async readEvents(jobId: string, afterId: string, count: number): Promise<StoredEvent[]> {
    const start = afterId === '-' ? '-' : `(${afterId}`;
    const rows = await this.redis.xrange(jobKeys.events(this.prefix, jobId), start, '+', 'COUNT', count);
    return rows.map(([id, kv]) => ({ id, event: eventOf(jobId, kv) }));
  }

  /** Blocks up to `blockMs` for events after `afterId` on a dedicated connection. */
  async waitEvents(
    conn: Redis,
    jobId: string,
    afterId: string,
    blockMs: number,
    count: number,
  ): Promise<StoredEvent[]> {
    const res = await conn.xread(
      'COUNT',
      count,
      'BLOCK',
      blockMs,
      'STREAMS',
      jobKeys.events(this.prefix, jobId),
      afterId,
    );
    if (!res) return [];
    const out: StoredEvent[] = [];
    for (const [, rows] of res) for (const [id, kv] of rows) out.push({ id, event: eventOf(jobId, kv) });
    return out;
  }

  // ---- scheduling sets -----------------------------------------------------------------------

  async pendingHead(): Promise<string | null> {
    return this.redis.lindex(jobKeys.pending(this.prefix), 0);
  }

  async pendingCount(): Promise<number> {
    return this.redis.llen(jobKeys.pending(this.prefix));
  }

  async pendingIds(): Promise<string[]> {
    return this.redis.lrange(jobKeys.pending(this.prefix), 0, 9_999);
  }

  async removePending(jobId: string): Promise<void> {
    await this.redis.lrem(jobKeys.pending(this.prefix), 0, jobId);
  }

  async pushPending(jobId: string): Promise<void> {
    await this.redis.rpush(jobKeys.pending(this.prefix), jobId);
  }

  async activeIds(): Promise<string[]> {
    return this.redis.smembers(jobKeys.active(this.prefix));
  }

  /** Adds a job to the set workers serve, and tells them at once. */
  async addActive(jobId: string): Promise<void> {
    await this.redis.sadd(jobKeys.active(this.prefix), jobId);
    await announceActiveChange(this.redis, this.prefix);
  }

  async removeActive(jobId: string): Promise<void> {
    await this.redis.srem(jobKeys.active(this.prefix), jobId);
    await announceActiveChange(this.redis, this.prefix);
  }

  /** Ids of every job with state QUEUED among the newest `limit` (restart recovery). */
  async queuedIds(limit = 10_000): Promise<string[]> {
    const ids = await this.redis.zrange(jobKeys.all(this.prefix), 0, limit - 1);
    if (!ids.length) return [];
    const pipe = this.redis.pipeline();
    for (const id of ids) pipe.hget(jobKeys.job(this.prefix, id), 'state');
    const rows = (await pipe.exec()) ?? [];
    const queued = jobStateToJSON(JobState.JOB_STATE_QUEUED);
    return ids.filter((_, i) => rows[i]?.[1] === queued);
  }

  async requestCancel(jobId: string): Promise<void> {
    await this.redis.set(jobKeys.cancel(this.prefix, jobId), '1');
  }

  async cancelRequested(jobId: string): Promise<boolean> {
    return (await this.redis.exists(jobKeys.cancel(this.prefix, jobId))) === 1;
  }
}

function num(v: string | undefined): number {
  const n = Number(v ?? 0);
  return Number.isFinite(n) ? n : 0;
}

function statusOf(jobId: string, h: Record<string, string>): JobStatus {
  return {
    jobId,
    spec: decodeJobSpec(h.spec) ?? undefined,
    owner: decodeJobOwner(h.owner),
    state: jobStateFromJSON(h.state),
    step: num(h.step),
    policyVersion: num(h.policyVersion),
    message: h.message ?? '',
    createdAtMs: num(h.createdAtMs),
    updatedAtMs: num(h.updatedAtMs),
  };
}

function eventOf(jobId: string, kv: string[]): JobEvent {
  let seq = 0;
  let json = '{}';
  for (let i = 0; i + 1 < kv.length; i += 2) {
    if (kv[i] === 'seq') seq = Number(kv[i + 1]);
    else if (kv[i] === 'e') json = kv[i + 1] ?? '{}';
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch {
    parsed = {};
  }
  return { ...JobEvent.fromJSON(parsed), jobId, seq };
}
