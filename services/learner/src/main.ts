// The learner process: config from SPARK_* / the config file, then startLearner; prints one
// `READY {"service":"learner","grpcPort":…,"metricsPort":…}` line once serving (the launcher waits for it)
// and shuts down gracefully on SIGTERM/SIGINT.
import { loadConfigOrExit } from '@spark/runtime/config';
import { Lifecycle } from '@spark/runtime/lifecycle';

import { learnerConfigShape, startLearner } from './index.js';

const config = loadConfigOrExit('learner', learnerConfigShape);
const service = await startLearner(config);
const lifecycle = new Lifecycle(service.logger, config.shutdownGraceMs + 5_000);
lifecycle.add('learner', () => service.close());
lifecycle.installSignalHandlers();
process.stdout.write(
  `READY ${JSON.stringify({ service: 'learner', grpcPort: service.grpcPort, metricsPort: service.metricsPort, address: service.address })}\n`,
);
