// The learn workers: one BullMQ worker per active job on `learn-<job>` (concurrency 1, JobQueueWorkers
// follows the active-job set). A job's model is loaded (and version 0 published) as soon as the job is
// active, so samplers can fetch it; each LearnTask is validated at the queue boundary and trained once
// in effect by the Learner. Malformed tasks and version mismatches fail at once (retrying cannot help).
import { InvalidArgumentError } from '@spark/runtime';
import { JobQueueWorkers, type LearnResult, type LearnTask } from '@spark/contract';
import type { Logger } from '@spark/runtime/logging';
import { UnrecoverableError, type Redis } from '@spark/runtime/redis';

import { PolicyVersionMismatchError, validateLearnTask, type Learner } from './learner.js';

export interface LearnWorkerOptions {
  learner: Learner;
  redis: Redis;
  redisUrl: string;
  prefix: string;
  logger: Logger;
  /** How often the active-job set is polled, in ms. */
  pollMs: number;
  /** BullMQ lock of a running update, in ms. */
  lockMs: number;
  maxSequencesPerTask: number;
}

export function learnWorkers(options: LearnWorkerOptions): JobQueueWorkers<LearnTask, LearnResult> {
  const { learner, logger } = options;
  return new JobQueueWorkers<LearnTask, LearnResult>({
    url: options.redisUrl,
    prefix: options.prefix,
    role: 'learn',
    redis: options.redis,
    logger,
    pollMs: options.pollMs,
    workerOptions: { concurrency: 1, lockDuration: options.lockMs },
    processorFor: (jobId) => {
      learner
        .ensureJob(jobId)
        .catch((err: unknown) => logger.error({ err, job: jobId }, 'cannot load job model'));
      return async (job) => {
        try {
          validateLearnTask(job.data, jobId, options.maxSequencesPerTask);
          return await learner.learn(job.data);
        } catch (err) {
          if (err instanceof InvalidArgumentError || err instanceof PolicyVersionMismatchError) {
            throw new UnrecoverableError(err.message);
          }
          throw err;
        }
      };
    },
  });
}
