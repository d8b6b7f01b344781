// Process entry of the reward-synthesis service: config from file/env, start, print READY, and shut down
// gracefully on SIGTERM/SIGINT.
import { loadConfigOrExit } from '@spark/runtime/config';

import { SERVICE_NAME, startRewardSynthesis, synthesisConfigShape } from './index.js';

const config = loadConfigOrExit(SERVICE_NAME, synthesisConfigShape);
const service = await startRewardSynthesis(config);
service.lifecycle.installSignalHandlers();
process.stdout.write(
  `READY ${JSON.stringify({ service: SERVICE_NAME, metricsPort: service.metricsPort })}\n`,
);
