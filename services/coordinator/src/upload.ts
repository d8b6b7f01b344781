// JobService.UploadDataset: a dataset file streamed by `spark submit`, stored content-addressed below the
// dataset root as `<datasetDir>/uploads/sha256/<hex>.jsonl` and named in specs as `sha256:<hex>`. The
// header comes first (size, SHA-256, format); the bytes are written to a temporary file while hashed and
// counted (bounded: the size limit, 1 MiB per chunk, uploads at once, the time), then checked — size and
// hash as announced, at least one usable record as the job's loader reads it — and only then renamed into
// place (atomically; the same content again leaves the stored file as it is). With an object store the
// file is also kept there (`datasets/sha256/<hex>.jsonl`) and fetched back when the dataset root lost it.
import { createHash, randomBytes } from 'node:crypto';
import {
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  renameSync,
  rmSync,
  statSync,
} from 'node:fs';
import { basename, join, resolve } from 'node:path';

import type { Logger } from 'pino';

import {
  DeadlineExceededError,
  InvalidArgumentError,
  ResourceExhaustedError,
  UnavailableError,
} from '@spark/runtime';
import type { grpc } from '@spark/runtime/grpc';
import { DatasetError, loadDatasetFile, type DatasetFormat } from '@spark/method/datasets';
import type { UploadDatasetRequest, UploadDatasetResponse } from '@spark/protocol';
import type { ObjectStore } from '@spark/runtime/storage';

import { DATASET_FORMATS, uploadedPath } from './spec.js';

/** Largest chunk message accepted, in bytes. */
export const UPLOAD_MAX_CHUNK = 1024 * 1024;
const SHA256 = /^[0-9a-f]{64}$/;

/** The object key of an uploaded dataset. */
export function uploadKey(sha256: string): string {
  return `datasets/sha256/${sha256}.jsonl`;
}

/**
 * When `path` is an uploaded dataset's place below the dataset root and the file is missing there, fetches
 * it back from `store` and checks its hash. Does nothing for other paths, present files or no store.
 */
export async function restoreUploadedDataset(
  store: ObjectStore | null,
  datasetDir: string,
  path: string,
  maxBytes: number,
): Promise<void> {
  if (!store) return;
  const m = /^([0-9a-f]{64})\.jsonl$/.exec(basename(path));
  if (!m || path !== uploadedPath(datasetDir, m[1] as string) || existsSync(path)) return;
  const hex = m[1] as string;
  if (!(await store.getFile(uploadKey(hex), path, maxBytes))) return;
  const hash = createHash('sha256');
  for await (const c of createReadStream(path)) hash.update(c as Buffer);
  if (hash.digest('hex') !== hex) {
    rmSync(path, { force: true });
    throw new UnavailableError(
      `the stored copy of dataset sha256:${hex} in ${store.url} does not match its hash`,
    );
  }
}

export interface UploadOptions {
  readonly datasetDir: string;
  /** Where uploads are also kept (null: only below the dataset root). */
  readonly store: ObjectStore | null;
  /** Largest file accepted, in bytes (RESOURCE_EXHAUSTED beyond). */
  readonly maxBytes: number;
  /** Uploads at once (RESOURCE_EXHAUSTED beyond). */
  readonly maxInFlight: number;
  /** Longest time one upload may take, in ms (DEADLINE_EXCEEDED beyond). */
  readonly timeoutMs: number;
  readonly logger: Logger;
}

/** The UploadDataset implementation; each call resolves to the response or throws a gRPC-mapped error. */
export function createUploader(options: UploadOptions) {
  let inFlight = 0;
  return async (call: grpc.ServerReadableStream<UploadDatasetRequest, UploadDatasetResponse>) => {
    if (inFlight >= options.maxInFlight)
      throw new ResourceExhaustedError(`${options.maxInFlight} uploads are running; try again later`);
    inFlight++;
    const tmpDir = join(resolve(options.datasetDir), 'uploads', 'tmp');
    mkdirSync(tmpDir, { recursive: true });
    const tmp = join(tmpDir, `${randomBytes(8).toString('hex')}.part`);
    const out = createWriteStream(tmp, { flags: 'wx' });
    const outClosed = new Promise<void>((res, rej) => {
      out.on('close', res);
      out.on('error', rej);
    });
    outClosed.catch(() => undefined); // awaited below; a write error must not go unhandled meanwhile
    const timer = setTimeout(
      () => call.destroy(new DeadlineExceededError('upload timed out')),
      options.timeoutMs,
    );
    let kept = false;
    try {
      let header: { size: number; sha256: string; format: string; name: string } | null = null;
      const hash = createHash('sha256');
      let received = 0;
      for await (const msg of call as AsyncIterable<UploadDatasetRequest>) {
        const part = msg.part;
        if (!header) {
          if (part?.$case !== 'header')
            throw new InvalidArgumentError('invalid upload', [
              'header: the first message must be the header',
            ]);
          header = checkHeader(part.value, options.maxBytes);
          continue;
        }
        if (part?.$case !== 'chunk')
          throw new InvalidArgumentError('invalid upload', ['chunk: only the first message is a header']);
        const chunk = part.value;
        if (chunk.length > UPLOAD_MAX_CHUNK)
          throw new InvalidArgumentError('invalid upload', [`chunk: at most ${UPLOAD_MAX_CHUNK} bytes each`]);
        received += chunk.length;
        if (received > header.size)
          throw new InvalidArgumentError('invalid upload', [
            `size: more bytes arrived than the announced ${header.size}`,
          ]);
        hash.update(chunk);
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
      }
      if (!header) throw new InvalidArgumentError('invalid upload', ['header: required']);
      out.end();
      await outClosed;
      if (received !== header.size)
        throw new InvalidArgumentError('invalid upload', [
          `size: ${received} bytes arrived, ${header.size} were announced`,
        ]);
      const digest = hash.digest('hex');
      if (digest !== header.sha256)
        throw new InvalidArgumentError('invalid upload', [
          `sha256: the bytes hash to ${digest}, ${header.sha256} was announced`,
        ]);
      const loaded = await loadDatasetFile(tmp, {
        format: header.format as DatasetFormat | 'auto',
        source: header.name || 'upload',
      }).catch((e: unknown) => {
        if (!(e instanceof DatasetError)) throw e;
        // the loader names the temporary file; the caller knows the upload by its name
        throw new InvalidArgumentError('invalid dataset', [
          `dataset: ${e.message.replaceAll(tmp, header?.name || 'upload')}`,
        ]);
      });
      if (loaded.records.length === 0) {
        const first = loaded.errors.slice(0, 3).map((e) => `line ${e.line}: ${e.message}`);
        throw new InvalidArgumentError('invalid dataset', [
          `dataset: no usable record (${loaded.errorCount} bad lines)${first.length ? `; ${first.join('; ')}` : ''}`,
        ]);
      }
      const final = uploadedPath(options.datasetDir, digest);
      const existed = existsSync(final) && statSync(final).isFile();
      if (!existed) {
        mkdirSync(join(final, '..'), { recursive: true });
        renameSync(tmp, final);
        kept = true;
      }
      if (options.store && (await options.store.list(uploadKey(digest), 1)).length === 0)
        await options.store.putFile(uploadKey(digest), final);
      options.logger.info(
        { sha256: digest, bytes: received, records: loaded.records.length, existed, name: header.name },
        'dataset uploaded',
      );
      return {
        dataset: `sha256:${digest}`,
        records: loaded.records.length,
        badLines: loaded.errorCount,
        existed,
      };
    } finally {
      clearTimeout(timer);
      inFlight--;
      // the file is created when the stream opens: wait for it to close before removing it
      if (!out.closed) out.destroy();
      await outClosed.catch(() => undefined);
      if (!kept) rmSync(tmp, { force: true });
    }
  };
}

function checkHeader(
  h: { size: number; sha256: string; format: string; name: string },
  maxBytes: number,
): { size: number; sha256: string; format: string; name: string } {
  if (h.size > maxBytes)
    throw new ResourceExhaustedError(
      `the dataset is ${h.size} bytes; this cluster accepts uploads of at most ${maxBytes} bytes`,
    );
  const problems: string[] = [];
  if (!Number.isSafeInteger(h.size) || h.size < 1) problems.push(`size: must be at least 1, got ${h.size}`);
  if (!SHA256.test(h.sha256)) problems.push('sha256: must be 64 lowercase hex digits');
  const format = h.format === '' ? 'auto' : h.format;
  if (!(DATASET_FORMATS as readonly string[]).includes(format))
    problems.push(`format: must be one of ${DATASET_FORMATS.join(', ')}, got "${format.slice(0, 64)}"`);
  if (h.name.length > 256) problems.push('name: at most 256 characters');
  if (problems.length) throw new InvalidArgumentError('invalid upload', problems);
  return { ...h, format };
}
