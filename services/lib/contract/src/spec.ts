// The stored job spec: the coordinator writes a job's validated JobSpec (defaults filled) into the job hash
// as proto JSON; workers that need job settings (the learner's model and checkpoint dir, the synthesis
// template variant, …) read it back with readJobSpec instead of parsing the hash themselves.
import type { Redis } from 'ioredis';

import { JobSpec } from '@spark/protocol';
import { jobKeys } from './keys.js';

/** Serialises a spec for the job hash's `spec` field (proto JSON, camelCase field names). */
export function encodeJobSpec(spec: JobSpec): string {
  return JSON.stringify(JobSpec.toJSON(spec));
}

/** Parses the job hash's `spec` field; null when absent or not valid JSON. */
export function decodeJobSpec(text: string | null | undefined): JobSpec | null {
  if (!text) return null;
  try {
    return JobSpec.fromJSON(JSON.parse(text));
  } catch {
    return null;
  }
}

/** The validated spec of a job, or null when the job does not exist. */
export async function readJobSpec(redis: Redis, prefix: string, jobId: string): Promise<JobSpec | null> {
  return decodeJobSpec(await redis.hget(jobKeys.job(prefix, jobId), 'spec'));
}
