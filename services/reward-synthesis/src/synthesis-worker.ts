// The synthesis worker: serves the `synthesis-<job>` queue of every active job (JobQueueWorkers). Each
// SynthesisTask recycles one policy phase's verified groups into judge and reflection prompts and feeds
// the job's FIFO buffer (synthesis.ts: the exactly-once rule). Metrics: spark_reward_synthesis_*.
import { InvalidArgumentError } from '@spark/runtime';
import {
  JobQueueProcessor,
  taskOnJobQueue,
  type SynthesisResult,
  type SynthesisTask,
  type WorkerHost,
} from '@spark/contract';
import type { ServiceMetrics } from '@spark/runtime/metrics';
import { UnrecoverableError, type Job } from '@spark/runtime/redis';

import { parseSynthesisTask, synthesize, type SynthesisOptions } from './synthesis.js';

export interface SynthesisWorkerOptions {
  /** Buffer bound and template defaults (the service config). */
  defaults: SynthesisOptions;
  pollMs: number;
  /** BullMQ lock of a running task (renewed while it runs), in ms: a dead worker's task returns after it. */
  lockMs: number;
}

function synthesisMetrics(metrics: ServiceMetrics) {
  return {
    itemsTotal: metrics.counter({
      name: 'items_total',
      help: 'Recycled prompt items pushed to job buffers, by kind',
      labelNames: ['kind'] as const,
    }),
    bufferLength: metrics.gauge({
      name: 'buffer_items',
      help: 'Items in the buffer of the job whose step ran last',
    }),
    batches: metrics.counter({ name: 'batches_released_total', help: 'Reward-phase batches released' }),
    dropped: metrics.counter({
      name: 'items_dropped_total',
      help: 'Oldest buffer items dropped because a buffer was over maxBufferItems',
    }),
    replays: metrics.counter({
      name: 'replays_total',
      help: 'Redelivered steps answered with their stored result',
    }),
    stepSeconds: metrics.histogram({
      name: 'step_seconds',
      help: 'Time to synthesise one step',
      buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10],
    }),
  };
}

/** The per-job synthesis workers. A processor of the service skeleton. */
export class SynthesisWorker extends JobQueueProcessor<SynthesisTask, SynthesisResult> {
  private readonly m: ReturnType<typeof synthesisMetrics>;

  constructor(
    host: WorkerHost,
    private readonly options: SynthesisWorkerOptions,
  ) {
    super(host, 'synthesis', { pollMs: options.pollMs, workerOptions: { lockDuration: options.lockMs } });
    this.m = synthesisMetrics(host.metrics);
  }

  protected async process(jobId: string, job: Job<SynthesisTask, SynthesisResult>): Promise<SynthesisResult> {
    const { m } = this;
    const task = taskOnJobQueue(job.data, jobId, parseSynthesisTask);
    const end = m.stepSeconds.startTimer();
    let outcome;
    try {
      outcome = await synthesize(this.host.redis, this.host.config.redisPrefix, task, this.options.defaults);
    } catch (err) {
      if (err instanceof InvalidArgumentError) throw new UnrecoverableError(err.message);
      throw err;
    }
    end();
    const r = outcome.result;
    if (outcome.fresh) {
      for (const item of outcome.items) m.itemsTotal.inc({ kind: item.kind });
      if (r.released) m.batches.inc();
      if (r.dropped) m.dropped.inc(r.dropped);
    } else m.replays.inc();
    m.bufferLength.set(r.bufferLength);
    this.host.logger.info(
      {
        job: jobId,
        step: task.step,
        judge: r.judgeItems,
        reflection: r.reflectionItems,
        buffer: r.bufferLength,
        released: r.released?.length ?? 0,
        replay: !outcome.fresh,
      },
      'step synthesised',
    );
    return r;
  }
}
