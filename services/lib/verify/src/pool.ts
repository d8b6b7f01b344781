// The stoppable symbolic step: a small pool of worker threads (symbolic-worker.ts), each running one
// comparison at a time. Time bounds, per job:
//   - running: a job gets `budgetMs` of its worker thread's CPU time (docs/verifier.md §3); a job that has
//     used it up has its worker TERMINATED (the only way to stop a parser that hangs in a loop) and the
//     worker is replaced — from a pre-warmed spare when one is ready, so the next job does not pay the
//     engine's start-up. CPU time, not wall time: on a loaded machine a 1 ms check can wait far longer than
//     the budget to be scheduled, and its verdict must not depend on that. Each worker reports its kernel
//     thread id when ready; while a job runs the pool reads that thread's CPU clock (/proc, cpuclock.ts)
//     from a timer, first when the budget could at the earliest be used up (CPU time never grows faster
//     than wall time) and then when the rest could be; an idle pool reads nothing. A thread that uses no
//     CPU would never use up its budget: a job whose thread has been BLOCKED (neither on a CPU nor
//     waiting for one: wall time less CPU time less run-queue time, from `schedstat`) for `wallCapFactor`
//     × budget, and is not runnable now, is terminated, stage `blocked`. Starvation on a loaded machine is run-queue time, so it
//     never cuts a job off; only an absolute bound of `maxRunWallFactor` × budget of wall time does
//     (stage `wall-cap`), so every call still ends. Without /proc (not Linux) the budget is charged in
//     wall time, as before;
//   - waiting, behind other jobs or for a worker to start (start-up, or replacement after a termination
//     with no warm spare): at most `maxQueueWaitMs`, NOT charged to the budget, so the verdict of a job does
//     not depend on what ran before it. A job dropped after that wait is a time-out, never a "wrong". Workers run under a heap limit, so a
// memory bomb kills only the worker. `close()` terminates every thread and settles every pending job.

import { Worker } from 'node:worker_threads';

import { openThreadClock, type CpuClock, type CpuSample } from './cpuclock.js';

/** A request to a worker: compare answer and label with the full rule chain including symbolic. */
export interface WorkerRequest {
  readonly id: number;
  readonly answer: string;
  readonly label: string;
  readonly relTol: number;
}

/** A worker's first message, once warm: its kernel thread id (null without /proc) for its CPU clock. */
export interface WorkerReady {
  readonly ready: true;
  readonly tid?: number | null;
}

/** A worker's reply to one request. */
export type WorkerReply =
  | { readonly id: number; readonly ok: true; readonly equal: boolean; readonly rule: string }
  | { readonly id: number; readonly ok: false; readonly error: string };

/**
 * Where a job's time went, in ms. `runMs` is what the budget is charged: the worker thread's CPU time from
 * the job's hand-off until its reply (or until the worker was terminated), or with `clock: 'wall'` (no
 * /proc) the wall time between them; 0 when it never ran. `runWallMs` is that span in wall time, waits for
 * the scheduler included. `waitMs` is the wall time before the hand-off — behind other jobs or for a
 * worker to start — which is not charged.
 */
export interface PoolTiming {
  readonly waitMs: number;
  readonly runMs: number;
  readonly runWallMs: number;
  readonly clock: 'cpu' | 'wall';
}

/** What a pool job resolves to (never rejects). */
export type PoolOutcome = (
  | { readonly kind: 'done'; readonly equal: boolean; readonly rule: string }
  | {
      readonly kind: 'timeout';
      readonly stage: 'queued' | 'running' | 'starting' | 'blocked' | 'wall-cap';
    }
  | { readonly kind: 'error'; readonly message: string }
) & {
  /** Set on every outcome of a job the pool accepted (absent when refused at once: closed, queue full). */
  readonly timing?: PoolTiming;
};

export interface PoolOptions {
  /** Worker threads that run jobs (default 1). */
  readonly workers?: number;
  /** Pre-warmed spare threads kept to replace a terminated worker at once (default 2). */
  readonly spares?: number;
  /** Heap limit per worker thread in MiB (default 256). */
  readonly maxHeapMb?: number;
  /** Longest queue of waiting jobs; further jobs resolve as errors at once (default 10,000). */
  readonly maxQueue?: number;
  /**
   * Longest wait before a job runs — behind other jobs, or for a worker to start (after a termination with
   * no warm spare, or at start-up) — before it is dropped as a time-out (default 30,000 ms). The wait is
   * not charged to the job's budget.
   */
  readonly maxQueueWaitMs?: number;
  /**
   * A running job whose thread has spent this many times its budget blocked (off the CPU and not waiting
   * for one) is terminated although it has not used its CPU budget, stage `blocked` (default 20). Where
   * run-queue time cannot be read (`stat` clock) all off-CPU time counts as blocked.
   */
  readonly wallCapFactor?: number;
  /**
   * The absolute bound: a running job is terminated after this many times its budget in wall time
   * whatever the reason, stage `wall-cap` (default 200: 10 s at 50 ms, reached only when the machine is
   * so loaded that the worker thread gets under 0.5 % of a core).
   */
  readonly maxRunWallFactor?: number;
  /**
   * How the running budget is charged: `cpu` (default) the worker thread's CPU time where /proc allows,
   * else wall time; `wall` always wall time.
   */
  readonly clock?: 'cpu' | 'wall';
  /** Worker entry module (tests only; default symbolic-worker-entry.mjs). */
  readonly entry?: URL;
}

export const DEFAULT_MAX_QUEUE_WAIT_MS = 30_000;
export const DEFAULT_WALL_CAP_FACTOR = 20;
export const DEFAULT_MAX_RUN_WALL_FACTOR = 200;
/** Pre-warmed spares by default (see docs/verifier.md §3 for the choice). */
export const DEFAULT_SPARES = 2;

interface Job {
  readonly req: WorkerRequest;
  /** Worker time this job may use once dispatched (ms). */
  readonly budgetMs: number;
  /** When the job was queued (performance.now()). */
  readonly queuedAt: number;
  /** When a worker took it (performance.now()); null while it waits. */
  dispatchedAt: number | null;
  /** Its worker thread's CPU clock at the hand-off (ms); null when charged in wall time. */
  cpuStart: number | null;
  /** Its worker thread's run-queue time at the hand-off (ms); null where it cannot be read. */
  waitStart: number | null;
  /** CPU ms charged, recorded when it stopped running; null while running or when charged in wall time. */
  cpuUsed: number | null;
  readonly resolve: (o: PoolOutcome) => void;
  timer: NodeJS.Timeout | null;
  slot: Slot | null;
}

interface Slot {
  readonly worker: Worker;
  /** The worker thread's CPU clock, opened from the thread id it reports when ready. */
  clock: CpuClock | null;
  /**
   * The clock's reading at the reply just received, while the thread waits for its next job. A job handed
   * over in the same turn (a backlog) starts from it, so it costs one read of /proc, at its reply, not two.
   * Cleared when no job follows at once: an idle thread may still run (a garbage collection of what the
   * previous job left, the rest of its start-up after reporting ready), and that is no job's cost.
   */
  last: CpuSample | null;
  ready: boolean;
  job: Job | null;
  dead: boolean;
}

const ENTRY = new URL('./symbolic-worker-entry.mjs', import.meta.url);

export class SymbolicPool {
  private readonly size: number;
  private readonly spareCount: number;
  private readonly maxHeapMb: number;
  private readonly maxQueue: number;
  private readonly maxQueueWaitMs: number;
  private readonly wallCapFactor: number;
  private readonly maxRunWallFactor: number;
  private readonly useCpu: boolean;
  private readonly entry: URL;
  /** Warm workers that take jobs (at most `size`; fewer while a replacement warms up). */
  private readonly active: Slot[] = [];
  /** Warm, idle workers standing by to replace a terminated one at once. */
  private readonly spares: Slot[] = [];
  /**
   * Workers started and still warming up, oldest first. The first to report ready fills a vacant active
   * place, else becomes a spare. Together the three lists hold `size + spares` live workers (see refill).
   */
  private readonly warming: Slot[] = [];
  private readonly queue: Job[] = [];
  private readonly readyWaiters: (() => void)[] = [];
  private nextId = 1;
  private closed = false;
  /** Workers terminated because a job overran its deadline (for metrics and the benchmark). */
  terminations = 0;
  /** Of those, workers terminated because a job's thread was blocked (off the CPU, not waiting for one). */
  blockedTerminations = 0;
  /** Of those, workers terminated at the absolute wall-clock bound. */
  wallCapTerminations = 0;

  constructor(opts: PoolOptions = {}) {
    this.size = Math.max(1, Math.floor(opts.workers ?? 1));
    this.spareCount = Math.max(0, Math.floor(opts.spares ?? DEFAULT_SPARES));
    this.maxHeapMb = opts.maxHeapMb ?? 256;
    this.maxQueue = opts.maxQueue ?? 10_000;
    this.maxQueueWaitMs = opts.maxQueueWaitMs ?? DEFAULT_MAX_QUEUE_WAIT_MS;
    this.wallCapFactor = Math.max(1, opts.wallCapFactor ?? DEFAULT_WALL_CAP_FACTOR);
    this.maxRunWallFactor = Math.max(
      this.wallCapFactor,
      opts.maxRunWallFactor ?? DEFAULT_MAX_RUN_WALL_FACTOR,
    );
    this.useCpu = (opts.clock ?? 'cpu') === 'cpu';
    this.entry = opts.entry ?? ENTRY;
    this.refill(true);
  }

  /**
   * Resolves once every worker, spares included, has warmed up (or the pool is closed): a spare still
   * warming would compete for the CPU with the first timed requests.
   */
  ready(): Promise<void> {
    if (this.closed || this.allReady()) return Promise.resolve();
    return new Promise((resolve) => this.readyWaiters.push(resolve));
  }

  /**
   * Runs one comparison with `budgetMs` of worker time; resolves (never rejects) within the time bounds
   * described at the top of this file, with the job's `timing`.
   */
  run(answer: string, label: string, relTol: number, budgetMs: number): Promise<PoolOutcome> {
    if (this.closed) return Promise.resolve({ kind: 'error', message: 'verifier pool is closed' });
    if (this.queue.length >= this.maxQueue) {
      return Promise.resolve({ kind: 'error', message: 'verifier queue is full' });
    }
    return new Promise<PoolOutcome>((resolve) => {
      const job: Job = {
        req: { id: this.nextId++, answer, label, relTol },
        budgetMs: Math.max(1, budgetMs),
        queuedAt: performance.now(),
        dispatchedAt: null,
        cpuStart: null,
        waitStart: null,
        cpuUsed: null,
        resolve,
        timer: null,
        slot: null,
      };
      job.timer = setTimeout(() => this.checkQueued(job), this.maxQueueWaitMs);
      this.queue.push(job);
      this.dispatch();
    });
  }

  /** Terminates every worker thread and settles every pending job as an error. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const pending = [...this.queue, ...this.active.flatMap((s) => (s.job ? [s.job] : []))];
    for (const job of pending) this.chargeCpu(job);
    this.queue.length = 0;
    for (const job of pending) this.settle(job, { kind: 'error', message: 'verifier pool closed' });
    const all = [...this.active, ...this.spares, ...this.warming];
    this.active.length = 0;
    this.spares.length = 0;
    this.warming.length = 0;
    for (const s of all) {
      s.dead = true;
      s.clock?.close();
      s.clock = null;
    }
    await Promise.all(all.map((s) => s.worker.terminate()));
    for (const w of this.readyWaiters.splice(0)) w();
  }

  private allReady(): boolean {
    return this.warming.length === 0;
  }

  private spawn(): Slot {
    const worker = new Worker(this.entry, {
      resourceLimits: { maxOldGenerationSizeMb: this.maxHeapMb },
      // The worker only needs the tsx hooks its entry registers; inherited flags (--test, …) are dropped.
      execArgv: [],
      stdout: false,
      stderr: false,
    });
    const slot: Slot = { worker, clock: null, last: null, ready: false, job: null, dead: false };
    worker.on('message', (msg: WorkerReply | WorkerReady) => this.onMessage(slot, msg));
    worker.on('error', (err: Error) => this.onExit(slot, `worker error: ${err.message}`));
    worker.on('exit', (code: number) => this.onExit(slot, `worker exited with code ${code}`));
    return slot;
  }

  /**
   * Starts workers until `size + spares` are live (active, spare or warming). While an active place is
   * vacant and enough workers are already warming to fill it, the spares' replacements start only once it
   * is filled: on a loaded machine every extra warm-up slows the one a queued job is waiting for.
   */
  private refill(atStart = false): void {
    if (this.closed) return;
    const want = this.size + this.spareCount;
    const vacant = this.size - this.active.length;
    while (this.active.length + this.spares.length + this.warming.length < want) {
      if (!atStart && vacant > 0 && this.warming.length >= vacant) return;
      this.warming.push(this.spawn());
    }
  }

  /** Fills vacant active places from the warm spares, then starts replacements for what was taken. */
  private promote(): void {
    while (this.active.length < this.size && this.spares.length > 0) {
      this.active.push(this.spares.shift() as Slot);
    }
    this.refill();
  }

  private onMessage(slot: Slot, msg: WorkerReply | WorkerReady): void {
    if (slot.dead) return;
    if ('ready' in msg) {
      slot.ready = true;
      if (this.useCpu && typeof msg.tid === 'number') slot.clock = openThreadClock(msg.tid);
      const wi = this.warming.indexOf(slot);
      if (wi >= 0) this.warming.splice(wi, 1);
      if (this.active.length < this.size) this.active.push(slot);
      else this.spares.push(slot);
      this.refill();
      if (this.allReady()) for (const w of this.readyWaiters.splice(0)) w();
      this.dispatch();
      return;
    }
    const job = slot.job;
    if (job === null || job.req.id !== msg.id) return;
    this.chargeCpu(job);
    slot.job = null;
    this.settle(
      job,
      msg.ok ? { kind: 'done', equal: msg.equal, rule: msg.rule } : { kind: 'error', message: msg.error },
    );
    this.dispatch();
    slot.last = null;
  }

  /** A worker died on its own (heap limit, crash): fail its job and replace it. */
  private onExit(slot: Slot, why: string): void {
    if (slot.dead || this.closed) return;
    const job = slot.job;
    if (job) this.chargeCpu(job);
    this.remove(slot);
    if (job) this.settle(job, { kind: 'error', message: why });
    this.promote();
    this.dispatch();
  }

  /** Marks a worker dead and takes it out of whichever list holds it. */
  private remove(slot: Slot): void {
    slot.dead = true;
    slot.job = null;
    slot.clock?.close();
    slot.clock = null;
    for (const list of [this.active, this.spares, this.warming]) {
      const i = list.indexOf(slot);
      if (i >= 0) list.splice(i, 1);
    }
  }

  /**
   * A queued job waited `maxQueueWaitMs` (behind other jobs, or for a worker to start after a termination):
   * it is dropped as a time-out (`queued` or `starting`). Its budget only counts once it runs, so what ran
   * before it (a hanging input that cost a worker) does not change its verdict.
   */
  private checkQueued(job: Job): void {
    job.timer = null;
    const qi = this.queue.indexOf(job);
    if (qi < 0) return;
    this.queue.splice(qi, 1);
    const starting = this.active.length === 0;
    this.settle(job, { kind: 'timeout', stage: starting ? 'starting' : 'queued' });
  }

  /** Records the CPU time a job has used so far on its worker thread (while the clock can still be read). */
  private chargeCpu(job: Job): void {
    const slot = job.slot;
    const now = job.cpuStart === null ? null : (slot?.clock?.sample() ?? null);
    if (slot !== null) slot.last = now;
    if (now !== null && job.cpuStart !== null) job.cpuUsed = now.cpuMs - job.cpuStart;
  }

  /**
   * Checks a running job charged in CPU time: terminates it once it has used its budget, once its thread
   * has been blocked too long, or at the absolute wall bound; else checks again when the first of these
   * could at the earliest be reached (CPU and blocked time each grow at most as fast as wall time), so a
   * job is read a few times, not every few ms.
   */
  private checkRunning(job: Job): void {
    job.timer = null;
    const slot = job.slot;
    if (slot === null || slot.dead || slot.job !== job || job.dispatchedAt === null) return;
    const cpu = slot.clock?.read() ?? null;
    if (cpu === null || job.cpuStart === null) {
      // Charged in wall time (`clock: 'wall'`, or the clock went away: the thread is exiting and its 'exit'
      // settles the job): expire once the budget has passed by performance.now(), else check again then.
      const left = job.dispatchedAt + job.budgetMs - performance.now();
      if (left <= 0) this.expireRunning(job, 'running');
      else job.timer = setTimeout(() => this.checkRunning(job), left);
      return;
    }
    const used = cpu - job.cpuStart;
    if (used >= job.budgetMs) {
      this.expireRunning(job, 'running');
      return;
    }
    const wall = performance.now() - job.dispatchedAt;
    const hardLeft = job.budgetMs * this.maxRunWallFactor - wall;
    if (hardLeft <= 0) {
      this.expireRunning(job, 'wall-cap');
      return;
    }
    const waited = job.waitStart === null ? null : (slot.clock?.readWait() ?? null);
    const queued = waited === null || job.waitStart === null ? 0 : Math.max(0, waited - job.waitStart);
    // Run-queue time counts a wait only once it ends: a thread that is runnable now is starved, not blocked.
    const blockedLeft = job.budgetMs * this.wallCapFactor - Math.max(0, wall - used - queued);
    if (blockedLeft <= 0 && slot.clock?.runnable() !== true) {
      this.expireRunning(job, 'blocked');
      return;
    }
    const untilBlocked = blockedLeft > 0 ? blockedLeft : job.budgetMs;
    const next = Math.min(Math.max(1, job.budgetMs - used), untilBlocked, hardLeft);
    job.timer = setTimeout(() => this.checkRunning(job), next);
  }

  /**
   * A running job used up its budget (or reached the wall cap): stop the worker running it. A warm spare
   * takes its place at once and a replacement starts warming now (not when the next job arrives), so the
   * next wait, if any, is short.
   */
  private expireRunning(job: Job, stage: 'running' | 'blocked' | 'wall-cap'): void {
    job.timer = null;
    const slot = job.slot;
    if (slot === null || slot.dead || slot.job !== job) return;
    this.chargeCpu(job);
    this.remove(slot);
    this.terminations++;
    if (stage === 'blocked') this.blockedTerminations++;
    if (stage === 'wall-cap') this.wallCapTerminations++;
    void slot.worker.terminate();
    this.settle(job, { kind: 'timeout', stage });
    this.promote();
    this.dispatch();
  }

  private settle(job: Job, outcome: PoolOutcome): void {
    if (job.timer !== null) clearTimeout(job.timer);
    job.timer = null;
    job.slot = null;
    const now = performance.now();
    const ran = job.dispatchedAt;
    const runWallMs = ran === null ? 0 : now - ran;
    const cpu = job.cpuStart !== null;
    const timing: PoolTiming = {
      waitMs: (ran ?? now) - job.queuedAt,
      runMs: cpu ? (job.cpuUsed ?? runWallMs) : runWallMs,
      runWallMs,
      clock: cpu ? 'cpu' : 'wall',
    };
    job.resolve({ ...outcome, timing });
  }

  private dispatch(): void {
    for (const slot of this.active) {
      if (this.queue.length === 0) return;
      if (!slot.ready || slot.dead || slot.job !== null) continue;
      const job = this.queue.shift();
      if (job === undefined) return;
      if (job.timer !== null) clearTimeout(job.timer);
      job.dispatchedAt = performance.now();
      // Handed over in the turn that received the previous reply, the job starts from that reply's reading:
      // this saves a read of /proc per job under a backlog. What it charges in addition is the thread's own
      // hand-off work between the two (finishing the previous reply, receiving this request): tens of µs
      // against a budget of tens of ms. Otherwise (`last` cleared: the thread sat idle) it reads the clock
      // now. Reading /proc is the largest cost the pool adds to a symbolic check.
      const at = slot.last ?? slot.clock?.sample() ?? null;
      slot.last = null;
      job.cpuStart = at?.cpuMs ?? null;
      job.waitStart = at?.waitMs ?? null;
      // Charged in CPU time, the budget cannot be used up before `budgetMs` of wall time: first check then.
      // Charged in wall time, the check also re-arms for what is left: a timer may fire up to a millisecond
      // early by performance.now() (the event loop's cached time), which must not cut a job off early.
      job.timer = setTimeout(() => this.checkRunning(job), job.budgetMs);
      slot.job = job;
      job.slot = slot;
      slot.worker.postMessage(job.req);
    }
  }
}
