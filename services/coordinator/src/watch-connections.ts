// The blocking Redis connections of WatchJob streams (one per stream, XREAD BLOCK). Closing them ends
// every watch at once on shutdown, before the gRPC server drains.
import { Redis } from 'ioredis';

import { workerOptions } from '@spark/runtime/redis';

export class WatchConnections {
  private readonly open_ = new Set<Redis>();

  constructor(private readonly redisUrl: string) {}

  /** A new blocking connection, disconnected by close() if the stream has not ended it. */
  open(): Redis {
    const c = new Redis(workerOptions(this.redisUrl));
    c.on('error', () => undefined);
    this.open_.add(c);
    c.once('end', () => this.open_.delete(c));
    return c;
  }

  async start(): Promise<void> {}

  async close(): Promise<void> {
    for (const c of this.open_) c.disconnect();
  }
}
