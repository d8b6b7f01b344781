// Errors: the small named error classes every service throws, and the one mapping from them to gRPC
// status codes. Messages are for users; stacks and causes stay in the logs, never on the wire.
import { status as GrpcStatus, Metadata, type ServiceError } from '@grpc/grpc-js';

/** Base class: every Spark error carries a stable machine-readable `code` string. */
export class SparkError extends Error {
  readonly code: string = 'INTERNAL';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** Thrown when caller input is malformed; `problems` lists every bad field at once. */
export class InvalidArgumentError extends SparkError {
  override readonly code = 'INVALID_ARGUMENT';
  readonly problems: readonly string[];
  constructor(message: string, problems: readonly string[] = [], options?: { cause?: unknown }) {
    super(problems.length ? `${message}: ${problems.join('; ')}` : message, options);
    this.problems = problems;
  }
}

/** Thrown when a named entity (job, checkpoint, policy version) does not exist. */
export class NotFoundError extends SparkError {
  override readonly code = 'NOT_FOUND';
}

/** Thrown when an entity with the same id already exists and the request is not idempotent with it. */
export class AlreadyExistsError extends SparkError {
  override readonly code = 'ALREADY_EXISTS';
}

/** Thrown when the request is valid but the target is in the wrong state (e.g. cancelling a finished job). */
export class FailedPreconditionError extends SparkError {
  override readonly code = 'FAILED_PRECONDITION';
}

/** Thrown when a bounded resource (queue, buffer, memory budget) is full; the caller may retry later. */
export class ResourceExhaustedError extends SparkError {
  override readonly code = 'RESOURCE_EXHAUSTED';
}

/** Thrown when a dependency (Redis, a peer service) is unreachable; the caller may retry. */
export class UnavailableError extends SparkError {
  override readonly code = 'UNAVAILABLE';
}

/** Thrown when an operation ran past its time budget. */
export class DeadlineExceededError extends SparkError {
  override readonly code = 'DEADLINE_EXCEEDED';
}

/** Thrown when credentials are missing or wrong. */
export class UnauthenticatedError extends SparkError {
  override readonly code = 'UNAUTHENTICATED';
}

/** Thrown when an authenticated caller may not do what it asked (its role, or another's resource). */
export class PermissionDeniedError extends SparkError {
  override readonly code = 'PERMISSION_DENIED';
}

/** Thrown when an operation was cancelled by its caller. */
export class CancelledError extends SparkError {
  override readonly code = 'CANCELLED';
}

/** Thrown when configuration is invalid; `problems` lists every bad key. */
export class ConfigError extends SparkError {
  override readonly code = 'INVALID_ARGUMENT';
  readonly problems: readonly string[];
  constructor(service: string, problems: readonly string[]) {
    super(`invalid configuration for ${service}:\n  - ${problems.join('\n  - ')}`);
    this.problems = problems;
  }
}

/** Metadata key carrying the list of problems of an INVALID_ARGUMENT status. */
export const problemsMetadataKey = 'spark-problems-bin';

/** The problems list of an INVALID_ARGUMENT status, as set by toGrpcError (empty when absent). */
export function problemsFromMetadata(metadata: Metadata | undefined): string[] {
  const raw = metadata?.get(problemsMetadataKey)[0];
  if (!Buffer.isBuffer(raw)) return [];
  try {
    const parsed: unknown = JSON.parse(raw.toString('utf8'));
    return Array.isArray(parsed) ? parsed.filter((p): p is string => typeof p === 'string') : [];
  } catch {
    return [];
  }
}

const codeToStatus: Record<string, GrpcStatus> = {
  INVALID_ARGUMENT: GrpcStatus.INVALID_ARGUMENT,
  NOT_FOUND: GrpcStatus.NOT_FOUND,
  ALREADY_EXISTS: GrpcStatus.ALREADY_EXISTS,
  FAILED_PRECONDITION: GrpcStatus.FAILED_PRECONDITION,
  RESOURCE_EXHAUSTED: GrpcStatus.RESOURCE_EXHAUSTED,
  UNAVAILABLE: GrpcStatus.UNAVAILABLE,
  DEADLINE_EXCEEDED: GrpcStatus.DEADLINE_EXCEEDED,
  UNAUTHENTICATED: GrpcStatus.UNAUTHENTICATED,
  PERMISSION_DENIED: GrpcStatus.PERMISSION_DENIED,
  CANCELLED: GrpcStatus.CANCELLED,
  INTERNAL: GrpcStatus.INTERNAL,
};

/**
 * Maps any thrown value to a gRPC ServiceError. Spark errors keep their message and code; anything else
 * becomes INTERNAL with a generic message (the original goes to the log by the caller, not the wire).
 */
export function toGrpcError(err: unknown): Partial<ServiceError> & { code: GrpcStatus; details: string } {
  if (err instanceof SparkError) {
    const code = codeToStatus[err.code] ?? GrpcStatus.INTERNAL;
    const metadata = new Metadata();
    if (err instanceof InvalidArgumentError || err instanceof ConfigError) {
      // Binary metadata (UTF-8 JSON array): problem texts may hold any character.
      const problems = err.problems.slice(0, 64).map((p) => p.slice(0, 512));
      metadata.set(problemsMetadataKey, Buffer.from(JSON.stringify(problems), 'utf8'));
    }
    return { code, details: err.message.slice(0, 4096), metadata };
  }
  return { code: GrpcStatus.INTERNAL, details: 'internal error' };
}

/** A short human description of any thrown value, for logs and CLI output. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
