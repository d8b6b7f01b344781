// The sampler side of the learner's weight stream (proto/spark/v1/policy.proto): `fetchPolicy` calls
// PolicyService.GetPolicy, reassembles the float32 little-endian parameter buffer from its chunks and
// verifies its size and SHA-256 against the header before handing it out. It lives in the contract
// package (not in @spark/learner) so samplers depend on the protocol, not on another service.
import { createHash } from 'node:crypto';

import { InvalidArgumentError, SparkError } from '@spark/runtime/errors';
import { clientSetup, grpc, type ClientOptions } from '@spark/runtime/grpc';
import {
  GetPolicyResponse,
  PolicyServiceService,
  type PolicyHeader,
  type PolicyServiceClient,
} from '@spark/protocol';

import { parseJson } from './parse.js';
import { parsePolicyConfig } from './types.js';

/**
 * Decodes a GetPolicyResponse. A chunk message (tag 0x12, varint length, bytes) becomes a view of the
 * received buffer — the generated decoder copies every chunk with Buffer.from — anything else goes
 * through the generated decoder.
 */
export function deserializePolicyResponse(buf: Buffer): GetPolicyResponse {
  if (buf.length > 1 && buf[0] === 0x12) {
    let len = 0;
    let shift = 1;
    let p = 1;
    for (; p < buf.length && p < 7; p++) {
      const b = buf[p] as number;
      len += (b & 0x7f) * shift;
      shift *= 128;
      if (b < 0x80) {
        p++;
        if (p + len === buf.length) return { part: { $case: 'chunk', value: buf.subarray(p) } };
        break;
      }
    }
  }
  return GetPolicyResponse.decode(buf);
}

/** The PolicyService client with the zero-copy chunk decoder (same wire format). */
const PolicyClientFast = grpc.makeGenericClientConstructor(
  {
    ...PolicyServiceService,
    getPolicy: { ...PolicyServiceService.getPolicy, responseDeserialize: deserializePolicyResponse },
  },
  'spark.v1.PolicyService',
) as unknown as new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: Partial<grpc.ClientOptions>,
) => PolicyServiceClient;

/** The stream broke its own header: wrong size, wrong checksum, chunks before the header, bad config. */
export class PolicyTransferError extends SparkError {
  override readonly code = 'DATA_LOSS';
}

/** Largest parameter buffer a sampler accepts by default (2^31 float32 parameters × 4 bytes = 8 GiB cap). */
export const DEFAULT_MAX_POLICY_BYTES = 8 * 1024 * 1024 * 1024;

/** The client's HTTP/2 receive window for policy streams. */
export const FLOW_CONTROL_WINDOW_BYTES = 32 * 1024 * 1024;

export interface FetchPolicyOptions extends ClientOptions {
  /** Refuse buffers larger than this many bytes (default DEFAULT_MAX_POLICY_BYTES). */
  maxBytes?: number;
  /** Deadline of the whole stream in milliseconds (default: `defaultDeadlineMs`). */
  deadlineMs?: number;
}

export interface FetchedPolicy {
  readonly jobId: string;
  readonly version: number;
  /** The model's Hugging Face style config.json, parsed (build the model with kernels' parseHfConfig). */
  readonly config: Record<string, unknown>;
  /** The same config as the text the learner sent. */
  readonly configJson: string;
  /** The flat parameter buffer (layout: the model's paramTable). */
  readonly params: Float32Array;
  /** Hex SHA-256 of the buffer, verified. */
  readonly sha256: string;
  readonly bytes: number;
}

/**
 * Streams the policy weights of `jobId` at exactly `version` from the learner at `address`. Rejects with
 * the gRPC error (FAILED_PRECONDITION when the learner does not hold that version, NOT_FOUND for an unknown
 * job, UNAUTHENTICATED without a valid token) or PolicyTransferError when the data does not match its header.
 */
export async function fetchPolicy(
  address: string,
  jobId: string,
  version: number,
  options: FetchPolicyOptions,
): Promise<FetchedPolicy> {
  if (!Number.isInteger(version) || version < 0 || version > 0xffffffff) {
    throw new InvalidArgumentError(`policy version must be a uint32, got ${version}`);
  }
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_POLICY_BYTES;
  const setup = clientSetup(options, address);
  const client = new PolicyClientFast(address, setup.credentials, {
    ...setup.options,
    // HTTP/2 flow control: a 64 KiB receive window makes the learner stop every 64 KiB for a WINDOW_UPDATE
    // round trip; a large window lets a whole policy stream through (measured in bench-weights.ts)
    'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW_BYTES,
    // chunks are 1 MiB by default; allow headroom for the framing and a larger configured chunk size
    'grpc.max_receive_message_length': Math.max(
      setup.options['grpc.max_receive_message_length'] as number,
      64 * 1024 * 1024,
    ),
  });
  try {
    return await new Promise<FetchedPolicy>((resolve, reject) => {
      const deadline = Date.now() + (options.deadlineMs ?? options.defaultDeadlineMs);
      const call = client.getPolicy({ jobId, version }, new grpc.Metadata(), { deadline });
      let header: PolicyHeader | null = null;
      let buffer: Buffer | null = null;
      let offset = 0;
      const hash = createHash('sha256');
      let failed = false;
      const fail = (err: Error) => {
        if (failed) return;
        failed = true;
        call.cancel();
        reject(err);
      };
      call.on('data', (msg: GetPolicyResponse) => {
        if (failed) return;
        const part = msg.part;
        if (part?.$case === 'header') {
          if (header) return fail(new PolicyTransferError('policy stream sent two headers'));
          const h = part.value;
          const total = h.totalBytes;
          if (h.jobId !== jobId || h.version !== version) {
            return fail(
              new PolicyTransferError(
                `asked for ${jobId}@${version}, the learner sent ${h.jobId}@${h.version}`,
              ),
            );
          }
          if (!Number.isSafeInteger(total) || total <= 0 || total % 4 !== 0 || total > maxBytes) {
            return fail(new PolicyTransferError(`policy size ${total} bytes is invalid (limit ${maxBytes})`));
          }
          header = h;
          buffer = Buffer.allocUnsafe(total);
        } else if (part?.$case === 'chunk') {
          if (!header || !buffer) return fail(new PolicyTransferError('policy chunk before the header'));
          const chunk = part.value;
          if (offset + chunk.length > buffer.length) {
            return fail(new PolicyTransferError(`policy stream is longer than ${buffer.length} bytes`));
          }
          buffer.set(chunk, offset);
          offset += chunk.length;
          hash.update(chunk);
        }
      });
      call.on('error', (err) => fail(err));
      call.on('end', () => {
        if (failed) return;
        if (!header || !buffer) return fail(new PolicyTransferError('policy stream ended without a header'));
        if (offset !== buffer.length) {
          return fail(new PolicyTransferError(`policy stream ended at ${offset} of ${buffer.length} bytes`));
        }
        const digest = hash.digest('hex');
        if (digest !== header.sha256) {
          return fail(new PolicyTransferError(`policy sha256 ${digest} does not match ${header.sha256}`));
        }
        let config: Record<string, unknown>;
        try {
          config = parsePolicyConfig(parseJson(header.configJson, 'policy config_json'));
        } catch (err) {
          return fail(new PolicyTransferError(err instanceof Error ? err.message : String(err)));
        }
        // float32 little-endian on the wire; this buffer is freshly allocated and 8-byte aligned
        const params = toFloat32LE(buffer);
        resolve({
          jobId,
          version,
          config,
          configJson: header.configJson,
          params,
          sha256: digest,
          bytes: buffer.length,
        });
      });
    });
  } finally {
    client.close();
  }
}

/** Float32Array view (or copy, on a big-endian host or a misaligned buffer) of little-endian bytes. */
export function toFloat32LE(bytes: Buffer): Float32Array {
  const n = bytes.length / 4;
  if (littleEndianHost && bytes.byteOffset % 4 === 0) {
    return new Float32Array(bytes.buffer, bytes.byteOffset, n);
  }
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = bytes.readFloatLE(i * 4);
  return out;
}

/** Little-endian bytes of a float32 buffer (a view on little-endian hosts, a copy otherwise). */
export function float32ToLE(params: Float32Array): Buffer {
  if (littleEndianHost) return Buffer.from(params.buffer, params.byteOffset, params.byteLength);
  const out = Buffer.allocUnsafe(params.length * 4);
  for (let i = 0; i < params.length; i++) out.writeFloatLE(params[i] as number, i * 4);
  return out;
}

const littleEndianHost = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
