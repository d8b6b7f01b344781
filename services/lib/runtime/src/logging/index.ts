// Logging: pino JSON lines with a fixed `service` field; `withJob` adds `job` and `step` for everything
// logged about one training job. Errors are serialised with their cause; secrets are redacted.
import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

export type { Logger } from 'pino';

export interface LoggerOptions {
  /** Service name, e.g. "coordinator". */
  service: string;
  level?: LevelWithSilent;
  /** Where lines go (default: stdout). Tests pass a stream to read them back. */
  destination?: DestinationStream;
}

/** The process logger of one service. */
export function createLogger(options: LoggerOptions): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: options.service, pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: ['authToken', 'token', 'password', 'redisUrl', '*.authToken', '*.password', '*.redisUrl'],
        censor: '[redacted]',
      },
      serializers: { err: pino.stdSerializers.errWithCause },
    },
    options.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

/** A child logger for one job (and optionally one step of it). */
export function withJob(logger: Logger, job: string, step?: number): Logger {
  return logger.child(step === undefined ? { job } : { job, step });
}
