// Following a job to its end — shared by `spark watch`, `spark submit --watch` and `spark demo`: streams
// WatchJob events into a ProgressPrinter, keeps every event (bounded) for reports, and returns the job's
// final status. When the stream breaks while the job still runs (a coordinator restart), it reconnects
// after the last sequence number seen, a bounded number of times.
import { JobEventType, type JobEvent, type JobStatus } from '@spark/protocol';

import { ProgressPrinter } from '../report/progress.js';
import { ClusterCallError, jobStateName, TERMINAL_STATES, type JobClient } from './index.js';

/** Most events kept in memory for the report (a long job's oldest phase events are dropped first). */
export const MAX_KEPT_EVENTS = 50_000;

export interface FollowOptions {
  /** Where progress goes (default: stdout); null prints nothing. */
  out?: (NodeJS.WritableStream & { isTTY?: boolean; columns?: number }) | null;
  /** Called for every event, after printing. */
  onEvent?: (event: JobEvent) => void;
  /** Reconnect attempts when the stream breaks while the job runs (default 5). */
  reconnects?: number;
  /** Idle bound of the stream (see JobClient.watch). */
  idleMs?: number;
}

export interface FollowResult {
  readonly status: JobStatus;
  readonly events: readonly JobEvent[];
  /** "SUCCEEDED" | "FAILED" | "CANCELLED" | … (without the JOB_STATE_ prefix). */
  readonly state: string;
}

/** Exit status of `spark watch` for a final state: 0 succeeded, 1 failed, 2 cancelled, 3 anything else. */
export function exitCodeFor(state: string): number {
  return state === 'SUCCEEDED' ? 0 : state === 'FAILED' ? 1 : state === 'CANCELLED' ? 2 : 3;
}

export async function followJob(
  client: JobClient,
  jobId: string,
  options: FollowOptions = {},
): Promise<FollowResult> {
  const first = await client.get(jobId);
  const spec = first.spec;
  const total = spec ? spec.maxSteps || 0 : 0;
  const out = options.out === undefined ? process.stdout : options.out;
  const printer = out ? new ProgressPrinter(out, total) : null;
  const events: JobEvent[] = [];
  let lastSeq = 0;
  let attempts = options.reconnects ?? 5;
  for (;;) {
    try {
      for await (const event of client.watch(jobId, {
        afterSeq: lastSeq,
        ...(options.idleMs !== undefined ? { idleMs: options.idleMs } : {}),
      })) {
        if (event.seq <= lastSeq) continue;
        lastSeq = event.seq;
        events.push(event);
        if (events.length > MAX_KEPT_EVENTS) {
          const i = events.findIndex((e) => e.type === JobEventType.JOB_EVENT_TYPE_PHASE);
          events.splice(i >= 0 ? i : 0, 1);
        }
        printer?.event(event);
        options.onEvent?.(event);
      }
    } catch (err) {
      if (!(err instanceof ClusterCallError) || attempts <= 0) {
        printer?.done();
        throw err;
      }
      attempts--;
      printer?.line(`(progress stream interrupted: ${err.message}; reconnecting)`);
      await new Promise((r) => setTimeout(r, 1_000));
    }
    const status = await client.get(jobId);
    const name = jobStateName(status.state);
    if (TERMINAL_STATES.has(name)) {
      printer?.done();
      return { status, events, state: name.replace(/^JOB_STATE_/, '') };
    }
    if (attempts-- <= 0) {
      printer?.done();
      throw new ClusterCallError(`job ${jobId}: the progress stream ended while the job is ${name}`, 14);
    }
  }
}
