// Process entry of the rollout service: config from file/env, start, print READY, and shut down
// gracefully on SIGTERM/SIGINT.
import { loadConfigOrExit } from '@spark/runtime/config';

import { ROLLOUT_SERVICE_NAME, rolloutConfigShape, startRollout } from './index.js';

const config = loadConfigOrExit(ROLLOUT_SERVICE_NAME, rolloutConfigShape);
const service = await startRollout(config);
service.lifecycle.installSignalHandlers();
process.stdout.write(
  `READY ${JSON.stringify({ service: ROLLOUT_SERVICE_NAME, metricsPort: service.metricsPort })}\n`,
);
