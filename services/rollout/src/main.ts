// Process entry of the rollout service: config from file/env, start, print READY, and shut down
// gracefully on SIGTERM/SIGINT.
import { runServiceMain } from '@spark/runtime/service';

import { ROLLOUT_SERVICE_NAME, rolloutConfigShape, startRollout } from './index.js';

await runServiceMain(ROLLOUT_SERVICE_NAME, rolloutConfigShape, startRollout);
