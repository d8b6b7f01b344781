import assert from 'node:assert/strict';
import { it } from 'node:test';

import { status } from '@grpc/grpc-js';

import {
  InvalidArgumentError,
  NotFoundError,
  problemsFromMetadata,
  ResourceExhaustedError,
  SparkError,
  toGrpcError,
} from './index.js';

it('maps each named error to its gRPC status and hides unknown errors', () => {
  assert.equal(toGrpcError(new NotFoundError('job x not found')).code, status.NOT_FOUND);
  assert.equal(toGrpcError(new ResourceExhaustedError('full')).code, status.RESOURCE_EXHAUSTED);
  const inv = toGrpcError(
    new InvalidArgumentError('bad spec', ['batchSize: must be ≥ 1', 'groupSize: must be ≥ 2']),
  );
  assert.equal(inv.code, status.INVALID_ARGUMENT);
  assert.equal(inv.details, 'bad spec: batchSize: must be ≥ 1; groupSize: must be ≥ 2');
  assert.deepEqual(problemsFromMetadata(inv.metadata), ['batchSize: must be ≥ 1', 'groupSize: must be ≥ 2']);
  const hidden = toGrpcError(new TypeError('cannot read x of undefined at /srv/secret.ts:12'));
  assert.equal(hidden.code, status.INTERNAL);
  assert.equal(hidden.details, 'internal error');
  const e = new NotFoundError('x', { cause: new Error('root') });
  assert.ok(e instanceof SparkError);
  assert.equal(e.name, 'NotFoundError');
  assert.equal((e.cause as Error).message, 'root');
});
