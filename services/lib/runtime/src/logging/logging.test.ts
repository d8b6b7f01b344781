import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { it } from 'node:test';

import { createLogger, withJob } from './index.js';

it('writes JSON lines with service, job and step, and redacts secrets', () => {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const logger = createLogger({ service: 'learner', level: 'debug', destination });
  withJob(logger, 'job-1', 7).info({ authToken: 'secret-token', samples: 3 }, 'step done');
  logger.debug('plain');
  logger.trace('dropped');
  assert.equal(lines.length, 2);
  const first = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
  assert.equal(first.service, 'learner');
  assert.equal(first.job, 'job-1');
  assert.equal(first.step, 7);
  assert.equal(first.level, 'info');
  assert.equal(first.msg, 'step done');
  assert.equal(first.authToken, '[redacted]');
  assert.equal(first.samples, 3);
  assert.equal(typeof first.time, 'string');
});
