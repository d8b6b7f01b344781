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

  /** Logs without throwing: with the launcher gone, stdout is a broken pipe and every write fails. */
  private log(level: 'info' | 'warn', obj: object, msg: string): void {
    try {
      this.logger?.[level](obj, msg);
    } catch {
      // nowhere to report it
    }
  }

  /**
   * Runs every closer once (reverse order), each bounded by `graceMs` (default: the constructor's); later
   * calls return the same promise.
   */
  shutdown(reason = 'shutdown', graceMs = this.graceMs): Promise<void> {
    this.shuttingDown ??= (async () => {
      this.log('info', { reason }, 'shutting down');
      for (const { name, close } of [...this.closers].reverse()) {
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            Promise.resolve().then(close),
            new Promise<void>((_, reject) => {
              timer = setTimeout(() => reject(new Error(`timed out after ${graceMs} ms`)), graceMs);
              timer.unref();
            }),
          ]);
        } catch (err) {
          this.log('warn', { err, closer: name }, 'closer failed during shutdown');
        } finally {
          if (timer) clearTimeout(timer);
        }
      }
      this.log('info', {}, 'shutdown complete');
    })();
    return this.shuttingDown;
  }

  /**
   * SIGTERM/SIGINT → graceful shutdown then exit 0; a second signal exits at once with 130. With an IPC
   * channel to a parent launcher, its closing (the launcher died) also shuts down. The exit happens even
   * when a closer or the logger throws.
   */
  installSignalHandlers(): void {
    const stop = (reason: string, graceMs?: number) => {
      void this.shutdown(reason, graceMs).finally(() => process.exit(0));
    };
    const onSignal = (signal: NodeJS.Signals) => {
      if (this.shuttingDown) {
        this.log('warn', { signal }, 'second signal: forcing exit');
        process.exit(130);
      }
      stop(signal);
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    // started by a launcher with an IPC channel (`spark up`, `spark demo`): its end means the launcher is
    // gone, so shut down rather than live on as an orphan; stdout/stderr are broken pipes from then on
    if (process.channel) {
      process.on('disconnect', () => {
        for (const s of [process.stdout, process.stderr]) s.on('error', () => undefined);
        this.log('warn', {}, 'launcher gone (IPC channel closed): shutting down');
        // Nobody waits for a drain any more: a short grace per closer (work in flight is redelivered).
        // Not process.exit: it runs the logger's exit handler, a synchronous flush of buffered lines that
        // retries forever while the dead launcher's end of stdout still reports "try again" (seen: a
        // reward-synthesis process stuck in it). Nobody reads our output or exit status any more, so end
        // with SIGKILL once the closers ran, or after a hard bound.
        const end = () => process.kill(process.pid, 'SIGKILL');
        if (!this.shuttingDown)
          void this.shutdown('launcher gone', Math.min(this.graceMs, 2_000)).finally(end);
        setTimeout(end, 10_000).unref();
      });
    }
  }
}
