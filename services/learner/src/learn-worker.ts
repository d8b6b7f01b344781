// The learn workers: one BullMQ worker per active job on `learn-<job>` (concurrency 1, following the
// active-job set). A job's model is loaded (and version 0 published) as soon as the job is active, so
// samplers can fetch it; each LearnTask is validated at the queue boundary and trained once in effect by
// the Learner. Malformed tasks and version mismatches fail at once (retrying cannot help).
import { InvalidArgumentError } from '@spark/runtime';
import {
  followJobQueues,
  type JobQueueWorkers,
  type LearnResult,
  type LearnTask,
  type WorkerHost,
} from '@spark/contract';
import { UnrecoverableError, type Job } from '@spark/runtime/redis';

import { PolicyVersionMismatchError, validateLearnTask, type Learner } from './learner.js';

export interface LearnWorkerOptions {
  learner: Learner;
  /** How often the active-job set is polled, in ms. */
  pollMs: number;
  /** BullMQ lock of a running update, in ms. */
  lockMs: number;
  maxSequencesPerTask: number;
}

export function learnWorkers(
  host: WorkerHost,
  options: LearnWorkerOptions,
): JobQueueWorkers<LearnTask, LearnResult> {
  const { learner } = options;
  return followJobQueues(
    host,
    'learn',
    async (jobId, job: Job<LearnTask, LearnResult>) => {
      try {
        return await learner.learn(validateLearnTask(job.data, jobId, options.maxSequencesPerTask));
      } catch (err) {
        if (err instanceof InvalidArgumentError || err instanceof PolicyVersionMismatchError) {
          throw new UnrecoverableError(err.message);
        }
        throw err;
      }
    },
    {
      pollMs: options.pollMs,
      workerOptions: { concurrency: 1, lockDuration: options.lockMs },
      // load the model (and publish version 0) as soon as the job is active, so samplers can fetch it
      onJob: (jobId) => {
        // a learner group's leader forms the job's group now (its heartbeat keeps it formed)
        learner.group(jobId);
        learner
          .ensureJob(jobId)
          .catch((err: unknown) => host.logger.error({ err, job: jobId }, 'cannot load job model'));
      },
    },
  );
}
