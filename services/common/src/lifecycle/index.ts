// Lifecycle: ordered graceful shutdown for a service process. Closers run in reverse registration order
// (servers stop accepting before queues close before Redis disconnects), each bounded by the grace period;
// SIGTERM/SIGINT trigger it once, a second signal forces exit.
import type { Logger } from 'pino';

type Closer = { name: string; close: () => Promise<void> | void };

export class Lifecycle {
  private readonly closers: Closer[] = [];
  private shuttingDown: Promise<void> | null = null;

  constructor(
    private readonly logger: Logger | null = null,
    private readonly graceMs = 10_000,
  ) {}

  /** Registers something to close on shutdown; returns it for chaining. */
  add<T>(name: string, close: () => Promise<void> | void, value?: T): T | undefined {
    this.closers.push({ name, close });
    return value;
  }

  get isShuttingDown(): boolean {
    return this.shuttingDown !== null;
  }

  /** Runs every closer once (reverse order); later calls return the same promise. */
  shutdown(reason = 'shutdown'): Promise<void> {
    this.shuttingDown ??= (async () => {
      this.logger?.info({ reason }, 'shutting down');
      for (const { name, close } of [...this.closers].reverse()) {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            Promise.resolve().then(close),
            new Promise<void>((_, reject) => {
              timer = setTimeout(() => reject(new Error(`timed out after ${this.graceMs} ms`)), this.graceMs);
              timer.unref();
            }),
          ]);
        } catch (err) {
          this.logger?.warn({ err, closer: name }, 'closer failed during shutdown');
        } finally {
          if (timer) clearTimeout(timer);
        }
      }
      this.logger?.info('shutdown complete');
    })();
    return this.shuttingDown;
  }

  /**
   * SIGTERM/SIGINT → graceful shutdown then exit 0; a second signal exits at once with 130. With an IPC
   * channel to a parent launcher, its closing (the launcher died) also shuts down.
   */
  installSignalHandlers(): void {
    const onSignal = (signal: NodeJS.Signals) => {
      if (this.shuttingDown) {
        this.logger?.warn({ signal }, 'second signal: forcing exit');
        process.exit(130);
      }
      void this.shutdown(signal).then(() => process.exit(0));
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // started by a launcher with an IPC channel (`spark up`, `spark demo`): its end means the launcher is
    // gone, so shut down rather than live on as an orphan
    if (process.channel) {
      process.on('disconnect', () => {
        this.logger?.warn('launcher gone (IPC channel closed): shutting down');
        if (!this.shuttingDown) void this.shutdown('SIGTERM').then(() => process.exit(0));
      });
    }
  }
}
