// Process entry of the reward-synthesis service: config from file/env, start, print READY, and shut down
// gracefully on SIGTERM/SIGINT.
import { runServiceMain } from '@spark/runtime/service';

import { SERVICE_NAME, startRewardSynthesis, synthesisConfigShape } from './index.js';

await runServiceMain(SERVICE_NAME, synthesisConfigShape, startRewardSynthesis);
