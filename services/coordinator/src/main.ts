// The coordinator process: config from defaults, SPARK_CONFIG_FILE and SPARK_* environment, then
// startCoordinator; prints one `READY {...}` line once it serves, and shuts down gracefully on
// SIGTERM/SIGINT (drivers stop at their next wait and the jobs resume on the next start).
import { loadCoordinatorConfig } from './config.js';
import { startCoordinator } from './index.js';

const config = loadCoordinatorConfig();
try {
  const c = await startCoordinator(config);
  process.stdout.write(
    `READY ${JSON.stringify({ service: 'coordinator', grpcPort: c.grpcPort, metricsPort: c.metricsPort })}\n`,
  );
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) process.exit(130);
    stopping = true;
    void c.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
    process.stderr.write(`coordinator: ${signal}, shutting down\n`);
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
} catch (err) {
  process.stderr.write(`coordinator failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
