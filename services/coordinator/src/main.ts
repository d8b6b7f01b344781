// The coordinator process: config from defaults, SPARK_CONFIG_FILE and SPARK_* environment, then
// startCoordinator; prints one `READY {...}` line once it serves, and shuts down gracefully on
// SIGTERM/SIGINT (drivers stop at their next wait and the jobs resume on the next start).
import { runServiceMain } from '@spark/runtime/service';

import { coordinatorShape } from './config.js';
import { startCoordinator } from './index.js';

await runServiceMain('coordinator', coordinatorShape, startCoordinator);
