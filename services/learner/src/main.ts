// The learner process: config from SPARK_* / the config file, then startLearner; prints one
// `READY {"service":"learner","grpcPort":…,"metricsPort":…,"address":…}` line once serving (the launcher
// waits for it) and shuts down gracefully on SIGTERM/SIGINT.
import { runServiceMain } from '@spark/runtime/service';

import { learnerConfigShape, startLearner } from './index.js';

await runServiceMain('learner', learnerConfigShape, startLearner);
