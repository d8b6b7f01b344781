// Process entry of the verifier service: config from file/env, start, print READY, and shut down
// gracefully on SIGTERM/SIGINT.
import { runServiceMain } from '@spark/runtime/service';

import { startVerifierService, VERIFIER_SERVICE_NAME, verifierConfigShape } from './service/index.js';

await runServiceMain(VERIFIER_SERVICE_NAME, verifierConfigShape, startVerifierService);
