// The stoppable symbolic step: a small pool of worker threads (symbolic-worker.ts), each running one
// comparison at a time. Time bounds, per job:
//   - running: a job gets `budgetMs` of worker time from the moment it is dispatched; a job still running
//     then has its worker TERMINATED (the only way to stop a parser that hangs in a loop) and the worker
//     is replaced — from a pre-warmed spare when one is ready, so the next job does not pay the engine's
//     start-up;
//   - waiting, behind other jobs or for a worker to start (start-up, or replacement after a termination
//     with no warm spare): at most `maxQueueWaitMs`, NOT charged to the budget, so the verdict of a job does
//     not depend on what ran before it. A job dropped after that wait is a time-out, never a "wrong". Workers run under a heap limit, so a
// memory bomb kills only the worker. `close()` terminates every thread and settles every pending job.

import { Worker } from 'node:worker_threads';

/** A request to a worker: compare answer and label with the full rule chain including symbolic. */
export interface WorkerRequest {
  readonly id: number;
  readonly answer: string;
  readonly label: string;
  readonly relTol: number;
}

/** A worker's reply to one request. */
export type WorkerReply =
  | { readonly id: number; readonly ok: true; readonly equal: boolean; readonly rule: string }
  | { readonly id: number; readonly ok: false; readonly error: string };

/** What a pool job resolves to (never rejects). */
export type PoolOutcome =
  | { readonly kind: 'done'; readonly equal: boolean; readonly rule: string }
  | { readonly kind: 'timeout'; readonly stage: 'queued' | 'running' | 'starting' }
  | { readonly kind: 'error'; readonly message: string };

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
}

export const DEFAULT_MAX_QUEUE_WAIT_MS = 30_000;

interface Job {
  readonly req: WorkerRequest;
  /** Worker time this job may use once dispatched (ms). */
  readonly budgetMs: number;
  /** When the job was queued (performance.now()). */
  readonly queuedAt: number;
  readonly resolve: (o: PoolOutcome) => void;
  timer: NodeJS.Timeout | null;
  slot: Slot | null;
}

interface Slot {
  readonly worker: Worker;
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
  private readonly active: Slot[] = [];
  private readonly spares: Slot[] = [];
  private readonly queue: Job[] = [];
  private readonly readyWaiters: (() => void)[] = [];
  private nextId = 1;
  private closed = false;
  /** Workers terminated because a job overran its deadline (for metrics and the benchmark). */
  terminations = 0;

  constructor(opts: PoolOptions = {}) {
    this.size = Math.max(1, Math.floor(opts.workers ?? 1));
    this.spareCount = Math.max(0, Math.floor(opts.spares ?? 2));
    this.maxHeapMb = opts.maxHeapMb ?? 256;
    this.maxQueue = opts.maxQueue ?? 10_000;
    this.maxQueueWaitMs = opts.maxQueueWaitMs ?? DEFAULT_MAX_QUEUE_WAIT_MS;
    for (let i = 0; i < this.size; i++) this.active.push(this.spawn());
    for (let i = 0; i < this.spareCount; i++) this.spares.push(this.spawn());
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
   * described at the top of this file.
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
    this.queue.length = 0;
    for (const job of pending) this.settle(job, { kind: 'error', message: 'verifier pool closed' });
    const all = [...this.active, ...this.spares];
    this.active.length = 0;
    this.spares.length = 0;
    for (const s of all) s.dead = true;
    await Promise.all(all.map((s) => s.worker.terminate()));
    for (const w of this.readyWaiters.splice(0)) w();
  }

  private allReady(): boolean {
    return this.active.every((s) => s.ready) && this.spares.every((s) => s.ready);
  }

  private spawn(): Slot {
    const worker = new Worker(ENTRY, {
      resourceLimits: { maxOldGenerationSizeMb: this.maxHeapMb },
      // The worker only needs the tsx hooks its entry registers; inherited flags (--test, …) are dropped.
      execArgv: [],
      stdout: false,
      stderr: false,
    });
    const slot: Slot = { worker, ready: false, job: null, dead: false };
    worker.on('message', (msg: WorkerReply | { ready: true }) => this.onMessage(slot, msg));
    worker.on('error', (err: Error) => this.onExit(slot, `worker error: ${err.message}`));
    worker.on('exit', (code: number) => this.onExit(slot, `worker exited with code ${code}`));
    return slot;
  }

  private onMessage(slot: Slot, msg: WorkerReply | { ready: true }): void {
    if (slot.dead) return;
    if ('ready' in msg) {
      slot.ready = true;
      if (this.allReady()) for (const w of this.readyWaiters.splice(0)) w();
      this.dispatch();
      return;
    }
    const job = slot.job;
    if (job === null || job.req.id !== msg.id) return;
    slot.job = null;
    this.settle(
      job,
      msg.ok ? { kind: 'done', equal: msg.equal, rule: msg.rule } : { kind: 'error', message: msg.error },
    );
    this.dispatch();
  }

  /** A worker died on its own (heap limit, crash): fail its job and replace it. */
  private onExit(slot: Slot, why: string): void {
    if (slot.dead || this.closed) return;
    slot.dead = true;
    const job = slot.job;
    slot.job = null;
    if (job) this.settle(job, { kind: 'error', message: why });
    this.replace(slot);
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
    const starting = !this.active.some((s) => s.ready && !s.dead);
    this.settle(job, { kind: 'timeout', stage: starting ? 'starting' : 'queued' });
  }

  /** A running job used up its budget: stop the worker running it and replace the worker. */
  private expireRunning(job: Job): void {
    job.timer = null;
    const slot = job.slot;
    if (slot === null || slot.dead || slot.job !== job) return;
    slot.dead = true;
    slot.job = null;
    this.terminations++;
    this.settle(job, { kind: 'timeout', stage: 'running' });
    // Terminating and spawning cost the main thread milliseconds: let the caller's continuation run first.
    setImmediate(() => {
      void slot.worker.terminate();
      this.replace(slot);
    });
  }

  /** Puts a ready spare (or a fresh thread) in a dead slot's place and starts a new spare. */
  private replace(dead: Slot): void {
    if (this.closed) return;
    const i = this.active.indexOf(dead);
    if (i >= 0) {
      const si = this.spares.findIndex((s) => s.ready);
      const next = si >= 0 ? this.spares.splice(si, 1)[0] : undefined;
      this.active[i] = next ?? this.spawn();
      if (next !== undefined && this.spares.length < this.spareCount) this.spares.push(this.spawn());
    } else {
      const si = this.spares.indexOf(dead);
      if (si >= 0) this.spares[si] = this.spawn();
    }
    this.dispatch();
  }

  private settle(job: Job, outcome: PoolOutcome): void {
    if (job.timer !== null) clearTimeout(job.timer);
    job.timer = null;
    job.slot = null;
    job.resolve(outcome);
  }

  private dispatch(): void {
    for (const slot of this.active) {
      if (this.queue.length === 0) return;
      if (!slot.ready || slot.dead || slot.job !== null) continue;
      const job = this.queue.shift();
      if (job === undefined) return;
      if (job.timer !== null) clearTimeout(job.timer);
      job.timer = setTimeout(() => this.expireRunning(job), job.budgetMs);
      slot.job = job;
      job.slot = slot;
      slot.worker.postMessage(job.req);
    }
  }
}
