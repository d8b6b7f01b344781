// Errors of @spark/kernels: the native binding reports failures as JS Errors carrying a stable `code`
// (ERR_SPARK_*); `toKernelError` re-types them into the named classes below, so callers can `instanceof`
// instead of parsing messages. Errors raised by the wrapper's own validation use the same classes. A JS
// value of the wrong type for the raw binding is rejected by napi-rs's argument conversion, whose errors
// carry a Node-API status as `code` (`InvalidArg`, `NumberExpected`, …): those are InvalidInputErrors too.

/** Base class of every @spark/kernels error; `code` is stable and machine-readable. */
export class KernelError extends Error {
  readonly code: string;
  constructor(message: string, code = 'ERR_SPARK_KERNEL', options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Thrown for bad arguments: wrong types or shapes, token id ≥ vocab, NaN/Infinity, limits exceeded. */
export class InvalidInputError extends KernelError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_SPARK_INVALID_INPUT', options);
  }
}

/** Thrown when a model configuration (preset, object or config.json) is malformed or inconsistent. */
export class ConfigError extends KernelError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_SPARK_CONFIG', options);
  }
}

/** Thrown by any call on a model after `free()`. */
export class ModelClosedError extends KernelError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_SPARK_MODEL_CLOSED', options);
  }
}

/** Thrown when two operations overlap on one model through the raw binding (the wrapper queues instead). */
export class ModelBusyError extends KernelError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_SPARK_MODEL_BUSY', options);
  }
}

/** Thrown by training or parameter-writing calls on a frozen reference copy. */
export class FrozenModelError extends KernelError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_SPARK_MODEL_FROZEN', options);
  }
}

/** Thrown when a file is malformed: a truncated or lying safetensors header, a tensor of the wrong shape. */
export class CheckpointFormatError extends KernelError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_SPARK_FORMAT', options);
  }
}

/** Thrown when the file system fails (missing file, permission, disk full). */
export class KernelIoError extends KernelError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_SPARK_IO', options);
  }
}

/** Thrown when native code panicked; the panic was caught at the boundary and the process is intact. */
export class NativePanicError extends KernelError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_SPARK_PANIC', options);
  }
}

/** Thrown when the native addon for this platform has not been built (or cannot be loaded). */
export class AddonNotBuiltError extends KernelError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, 'ERR_SPARK_ADDON_NOT_BUILT', options);
  }
}

/** The named failures of the collective layer (`Collective`, `Model.allreduceGrads`, …). */
export type CollectiveErrorCode =
  | 'COLLECTIVE_TIMEOUT'
  | 'COLLECTIVE_PEER_LOST'
  | 'COLLECTIVE_STORE'
  | 'COLLECTIVE_FAILED'
  | 'COLLECTIVE_CLOSED'
  | 'COLLECTIVE_BROKEN'
  | 'COLLECTIVE_BUSY';

/**
 * A collective failed: COLLECTIVE_TIMEOUT (rendezvous or operation past `timeoutMs`; a rendezvous timeout
 * names the ranks that did not join), COLLECTIVE_PEER_LOST (a peer's connection closed or reset),
 * COLLECTIVE_STORE (Redis unreachable or refused), COLLECTIVE_FAILED (another library error),
 * COLLECTIVE_CLOSED (`close()` was called), COLLECTIVE_BROKEN (an earlier call on this group failed; form a
 * new group under a new prefix), COLLECTIVE_BUSY (overlapping raw-binding calls; the wrapper queues).
 */
export class CollectiveError extends KernelError {
  declare readonly code: CollectiveErrorCode;
  constructor(message: string, code: CollectiveErrorCode, options?: { cause?: unknown }) {
    super(message, code, options);
  }
}

const collectiveCodes = new Set<string>([
  'COLLECTIVE_TIMEOUT',
  'COLLECTIVE_PEER_LOST',
  'COLLECTIVE_STORE',
  'COLLECTIVE_FAILED',
  'COLLECTIVE_CLOSED',
  'COLLECTIVE_BROKEN',
  'COLLECTIVE_BUSY',
]);

const byCode: Record<string, new (message: string, options?: { cause?: unknown }) => KernelError> = {
  ERR_SPARK_INVALID_INPUT: InvalidInputError,
  ERR_SPARK_MODEL_CLOSED: ModelClosedError,
  ERR_SPARK_MODEL_BUSY: ModelBusyError,
  ERR_SPARK_MODEL_FROZEN: FrozenModelError,
  ERR_SPARK_FORMAT: CheckpointFormatError,
  ERR_SPARK_IO: KernelIoError,
  ERR_SPARK_PANIC: NativePanicError,
  // napi-rs argument conversion (Node-API statuses)
  InvalidArg: InvalidInputError,
  ObjectExpected: InvalidInputError,
  StringExpected: InvalidInputError,
  NumberExpected: InvalidInputError,
  BooleanExpected: InvalidInputError,
  ArrayExpected: InvalidInputError,
  BigintExpected: InvalidInputError,
  ArrayBufferExpected: InvalidInputError,
};

/** Re-types an error thrown by the native binding (by its `code`); other values become a KernelError. */
export function toKernelError(err: unknown): KernelError {
  if (err instanceof KernelError) return err;
  if (err instanceof Error) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && collectiveCodes.has(code)) {
      return new CollectiveError(err.message, code as CollectiveErrorCode, { cause: err });
    }
    const Cls = typeof code === 'string' && Object.hasOwn(byCode, code) ? byCode[code] : undefined;
    if (Cls) return new Cls(err.message, { cause: err });
    return new KernelError(err.message, typeof code === 'string' ? code : 'ERR_SPARK_KERNEL', {
      cause: err,
    });
  }
  return new KernelError(`native call failed: ${String(err)}`);
}
