// PolicyService.GetPolicy (proto/spark/v1/policy.proto): a header (config, total size, sha256, chunk size)
// then the float32 LE parameter buffer of one held version in chunks. The snapshot is an immutable Buffer,
// so a new version published mid-stream never changes the bytes being sent. Backpressure: the handler waits
// for 'drain' whenever grpc-js's write buffer is full, and stops when the client cancels.
import { InvalidArgumentError } from '@spark/common';
import { toGrpcError } from '@spark/common';
import { grpc } from '@spark/common/grpc';
import type { Logger } from '@spark/common/logging';
import {
  PolicyServiceService,
  type GetPolicyRequest,
  type GetPolicyResponse,
  type PolicyServiceServer,
} from '@spark/common/proto';

import type { Learner } from './learner.js';
import type { LearnerMetrics } from './metrics.js';

export { PolicyServiceService };

export function policyServiceImpl(
  learner: Learner,
  options: { logger: Logger; metrics: LearnerMetrics; chunkBytes: number },
): PolicyServiceServer {
  const { logger, metrics, chunkBytes } = options;
  const getPolicy = streamHandler<GetPolicyRequest, GetPolicyResponse>(logger, async (req, call) => {
    const t0 = performance.now();
    try {
      if (typeof req.jobId !== 'string' || req.jobId === '')
        throw new InvalidArgumentError('job_id is required');
      const snap = await learner.snapshotFor(req.jobId, req.version);
      const total = snap.bytes.length;
      await write(call, {
        part: {
          $case: 'header',
          value: {
            jobId: snap.jobId,
            version: snap.version,
            configJson: snap.configJson,
            totalBytes: total,
            sha256: snap.sha256,
            chunkBytes,
          },
        },
      });
      for (let off = 0; off < total; off += chunkBytes) {
        if (call.cancelled) {
          metrics.weightStreams.inc({ outcome: 'cancelled' });
          return;
        }
        const chunk = snap.bytes.subarray(off, Math.min(total, off + chunkBytes));
        await write(call, { part: { $case: 'chunk', value: chunk } });
        metrics.weightBytesSent.inc(chunk.length);
      }
      metrics.weightStreams.inc({ outcome: 'ok' });
      metrics.weightStreamSeconds.observe((performance.now() - t0) / 1000);
    } catch (err) {
      metrics.weightStreams.inc({ outcome: 'error' });
      throw err;
    }
  });
  return { getPolicy };
}

/**
 * Adapts an async function to a server-streaming handler. Errors are mapped with toGrpcError and ended with
 * `emit('error')`, which grpc-js turns into the call's status; (`destroy(err)` would end the stream
 * without ever sending a status, leaving the client waiting for its deadline.)
 */
function streamHandler<Req, Res>(
  logger: Logger,
  fn: (request: Req, call: grpc.ServerWritableStream<Req, Res>) => Promise<void>,
): grpc.handleServerStreamingCall<Req, Res> {
  return (call) => {
    fn(call.request, call).then(
      () => call.end(),
      (err: unknown) => {
        const mapped = toGrpcError(err);
        if (mapped.code === grpc.status.INTERNAL)
          logger.error({ err, path: call.getPath() }, 'stream failed');
        call.emit('error', Object.assign(new Error(mapped.details), mapped));
      },
    );
  };
}

/** Writes one message, waiting for 'drain' when the stream's buffer is full (or the call ends). */
function write(
  call: grpc.ServerWritableStream<GetPolicyRequest, GetPolicyResponse>,
  msg: GetPolicyResponse,
): Promise<void> {
  if (call.write(msg)) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      call.off('drain', done);
      call.off('cancelled', done);
      call.off('close', done);
      resolve();
    };
    call.on('drain', done);
    call.on('cancelled', done);
    call.on('close', done);
  });
}
