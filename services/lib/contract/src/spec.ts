// The stored job spec: the coordinator writes a job's validated JobSpec (defaults filled) into the job hash
// as proto JSON; workers that need job settings (the learner's model and checkpoint dir, the synthesis
// template variant, …) read it back with readJobSpec instead of parsing the hash themselves. The hash's
// `owner` field names the principal that submitted the job (jobOwnerSchema).
import type { Redis } from 'ioredis';
import { z } from 'zod';

import { JobSpec } from '@spark/protocol';
import { PRINCIPAL_NAME_PATTERN } from '@spark/runtime/auth';
import { jobKeys } from './keys.js';

/** A job's owner: the submitting principal's name (printable ASCII without spaces, at most 256). */
export const jobOwnerSchema = z
  .string()
  .regex(PRINCIPAL_NAME_PATTERN, 'a principal name: printable ASCII without spaces, 1 to 256 characters');

/** The job hash's `owner` field; "" when absent or not a valid name (jobs stored before owners were). */
export function decodeJobOwner(text: string | null | undefined): string {
  const r = jobOwnerSchema.safeParse(text ?? '');
  return r.success ? r.data : '';
}

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
