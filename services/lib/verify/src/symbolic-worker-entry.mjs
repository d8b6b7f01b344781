// Worker bootstrap: registers tsx in this worker thread (loader hooks are per thread), then loads the
// TypeScript worker. Mirrors services/cli/bin/spark.mjs.
import { register } from 'tsx/esm/api';

register();
await import('./symbolic-worker.ts');
