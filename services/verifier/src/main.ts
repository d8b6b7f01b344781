// Process entry of the verifier service: config from file/env, start, print READY, and shut down
// gracefully on SIGTERM/SIGINT.
import { loadConfigOrExit } from '@spark/runtime/config';

import { startVerifierService, VERIFIER_SERVICE_NAME, verifierConfigShape } from './service/index.js';

const config = loadConfigOrExit(VERIFIER_SERVICE_NAME, verifierConfigShape);
const service = await startVerifierService(config);
service.lifecycle.installSignalHandlers();
process.stdout.write(
  `READY ${JSON.stringify({ service: VERIFIER_SERVICE_NAME, metricsPort: service.metricsPort })}\n`,
);
