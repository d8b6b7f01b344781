// Object storage for checkpoints (and anything else several services must reach): one small interface,
// `ObjectStore`, with two implementations — the local filesystem (the embedded default: keys are paths
// below a root directory) and any S3-API store (AWS S3, MinIO, versitygw, Ceph RGW…, through
// @aws-sdk/client-s3). Keys are relative slash-separated names (letters, digits, `._-`; no `..`, no
// leading slash). Every read is bounded (`maxBytes`); every write lands whole or not at all (the
// filesystem store writes a temporary file and renames it; an S3 PUT is atomic per object). Objects are
// written with a single PUT, so one object is at most 5 GiB on S3.
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname, join, resolve, sep } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import {
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
} from '@aws-sdk/client-s3';
import { z } from 'zod';

import { InvalidArgumentError, ResourceExhaustedError, UnavailableError } from '../errors/index.js';

/** Where objects live; see the module header. */
export interface ObjectStore {
  /** A description for logs and messages (`file:///…` or `s3://bucket/prefix (endpoint)`), no secrets. */
  readonly url: string;
  /** Stores a local file's bytes under `key` (replacing any object there). */
  putFile(key: string, path: string): Promise<void>;
  /** Stores bytes under `key`. */
  putBytes(key: string, bytes: Uint8Array): Promise<void>;
  /** The object's bytes, or null when there is none; ResourceExhaustedError beyond `maxBytes`. */
  getBytes(key: string, maxBytes: number): Promise<Buffer | null>;
  /** Writes the object to `path` (whole or not at all); false when there is none. */
  getFile(key: string, path: string, maxBytes: number): Promise<boolean>;
  /** The keys that start with `prefix` (e.g. `a/b/`, or a whole key), at most `max`, in key order. */
  list(prefix: string, max: number): Promise<string[]>;
  /** Releases connections. */
  close(): void;
}

const KEY = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*\/?$/;

/** Throws InvalidArgumentError unless `key` is a valid object key (or, with `prefix`, a key prefix). */
export function checkKey(key: string, prefix = false): void {
  const ok =
    key.length <= 1024 &&
    (prefix && key === '' ? true : KEY.test(key)) &&
    (prefix || !key.endsWith('/')) &&
    !key.split('/').some((s) => s === '.' || s === '..');
  if (!ok) throw new InvalidArgumentError(`invalid object key "${key.slice(0, 200)}"`);
}

/** The filesystem store: `key` is the path below `root`. */
export class FileObjectStore implements ObjectStore {
  readonly root: string;
  readonly url: string;

  constructor(root: string) {
    this.root = resolve(root);
    this.url = `file://${this.root}`;
  }

  private path(key: string): string {
    checkKey(key);
    const p = join(this.root, ...key.split('/'));
    if (!p.startsWith(this.root + sep)) throw new InvalidArgumentError(`invalid object key "${key}"`);
    return p;
  }

  private async atomically(path: string, write: (tmp: string) => Promise<void>): Promise<void> {
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    try {
      await write(tmp);
      await rename(tmp, path);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }

  async putFile(key: string, path: string): Promise<void> {
    const target = this.path(key);
    if (resolve(path) === target) return; // already in place
    await this.atomically(target, (tmp) => copyFile(path, tmp));
  }

  async putBytes(key: string, bytes: Uint8Array): Promise<void> {
    await this.atomically(this.path(key), (tmp) => writeFile(tmp, bytes));
  }

  async getBytes(key: string, maxBytes: number): Promise<Buffer | null> {
    const p = this.path(key);
    const info = await stat(p).catch(() => null);
    if (!info?.isFile()) return null;
    if (info.size > maxBytes) throw tooLarge(this.url, key, maxBytes);
    return readFile(p);
  }

  async getFile(key: string, path: string, maxBytes: number): Promise<boolean> {
    const p = this.path(key);
    const info = await stat(p).catch(() => null);
    if (!info?.isFile()) return false;
    if (info.size > maxBytes) throw tooLarge(this.url, key, maxBytes);
    await this.atomically(path, (tmp) => copyFile(p, tmp));
    return true;
  }

  async list(prefix: string, max: number): Promise<string[]> {
    checkKey(prefix, true);
    const out: string[] = [];
    const walk = async (dir: string, rel: string): Promise<void> => {
      const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const e of entries) {
        if (out.length >= max) return;
        const key = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) {
          // only directories that can hold keys with the prefix
          if (`${key}/`.startsWith(prefix) || prefix.startsWith(`${key}/`))
            await walk(join(dir, e.name), key);
        } else if (e.isFile() && !e.name.endsWith('.tmp') && key.startsWith(prefix)) out.push(key);
      }
    };
    // start at the deepest directory the prefix names in full
    const base = prefix.slice(0, prefix.lastIndexOf('/') + 1).replace(/\/$/, '');
    await walk(base ? join(this.root, ...base.split('/')) : this.root, base);
    return out;
  }

  close(): void {}
}

function tooLarge(url: string, key: string, maxBytes: number): ResourceExhaustedError {
  return new ResourceExhaustedError(`object ${key} in ${url} is larger than ${maxBytes} bytes`);
}

export interface S3StoreOptions {
  /** The S3 API endpoint (`https://s3.eu-west-1.amazonaws.com`, `http://minio:9000`); empty = AWS's. */
  readonly endpoint: string;
  readonly region: string;
  readonly bucket: string;
  /** Prepended to every key (e.g. `spark/`); empty or ending with `/`. */
  readonly prefix: string;
  /** Explicit credentials; when empty, the SDK's default chain (AWS_* environment, web identity, …). */
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** Path-style addressing (`endpoint/bucket/key`), which MinIO-like stores need. */
  readonly forcePathStyle: boolean;
  /** Longest time one request may take, in ms. */
  readonly requestTimeoutMs: number;
}

function isMissing(err: unknown): boolean {
  return (
    err instanceof S3ServiceException &&
    (err.name === 'NoSuchKey' || err.name === 'NotFound' || err.$metadata.httpStatusCode === 404)
  );
}

/** An S3-API store (see the module header). */
export class S3ObjectStore implements ObjectStore {
  readonly url: string;
  private readonly client: S3Client;

  constructor(private readonly options: S3StoreOptions) {
    if (options.prefix) checkKey(options.prefix, true);
    this.url = `s3://${options.bucket}/${options.prefix}${options.endpoint ? ` (${options.endpoint})` : ''}`;
    this.client = new S3Client({
      region: options.region,
      ...(options.endpoint ? { endpoint: options.endpoint } : {}),
      forcePathStyle: options.forcePathStyle,
      ...(options.accessKeyId
        ? { credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey } }
        : {}),
      maxAttempts: 3,
      requestHandler: { requestTimeout: options.requestTimeoutMs, connectionTimeout: 10_000 },
    });
  }

  private key(key: string): string {
    checkKey(key);
    return this.options.prefix + key;
  }

  private fail(what: string, key: string, err: unknown): Error {
    if (err instanceof ResourceExhaustedError || err instanceof InvalidArgumentError) return err;
    const why = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    return new UnavailableError(`object store ${this.url}: ${what} ${key} failed (${why.slice(0, 300)})`);
  }

  async putFile(key: string, path: string): Promise<void> {
    const k = this.key(key);
    try {
      const { size } = await stat(path);
      await this.client.send(
        new PutObjectCommand({
          Bucket: this.options.bucket,
          Key: k,
          Body: createReadStream(path),
          ContentLength: size,
        }),
      );
    } catch (err) {
      throw this.fail('writing', key, err);
    }
  }

  async putBytes(key: string, bytes: Uint8Array): Promise<void> {
    const k = this.key(key);
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.options.bucket, Key: k, Body: bytes }));
    } catch (err) {
      throw this.fail('writing', key, err);
    }
  }

  /** The object's body stream, or null when there is none; refused beyond `maxBytes`. */
  private async open(key: string, maxBytes: number): Promise<Readable | null> {
    const k = this.key(key);
    let res;
    try {
      res = await this.client.send(new GetObjectCommand({ Bucket: this.options.bucket, Key: k }));
    } catch (err) {
      if (isMissing(err)) return null;
      throw this.fail('reading', key, err);
    }
    const body = res.Body as Readable | undefined;
    if (!body) throw this.fail('reading', key, new Error('no body'));
    if ((res.ContentLength ?? 0) > maxBytes) {
      body.destroy();
      throw tooLarge(this.url, key, maxBytes);
    }
    return body;
  }

  async getBytes(key: string, maxBytes: number): Promise<Buffer | null> {
    const body = await this.open(key, maxBytes);
    if (!body) return null;
    const chunks: Buffer[] = [];
    let n = 0;
    try {
      for await (const c of body) {
        n += (c as Buffer).length;
        if (n > maxBytes) throw tooLarge(this.url, key, maxBytes);
        chunks.push(c as Buffer);
      }
    } catch (err) {
      body.destroy();
      throw this.fail('reading', key, err);
    }
    return Buffer.concat(chunks);
  }

  async getFile(key: string, path: string, maxBytes: number): Promise<boolean> {
    const body = await this.open(key, maxBytes);
    if (!body) return false;
    await mkdir(dirname(path), { recursive: true });
    const tmp = `${path}.${randomBytes(6).toString('hex')}.tmp`;
    let n = 0;
    try {
      await pipeline(
        body,
        async function* (src: AsyncIterable<Buffer>) {
          for await (const c of src) {
            n += c.length;
            if (n > maxBytes)
              throw new ResourceExhaustedError(`object ${key} is larger than ${maxBytes} bytes`);
            yield c;
          }
        },
        createWriteStream(tmp),
      );
      await rename(tmp, path);
      return true;
    } catch (err) {
      await rm(tmp, { force: true });
      throw this.fail('reading', key, err);
    }
  }

  async list(prefix: string, max: number): Promise<string[]> {
    checkKey(prefix, true);
    const out: string[] = [];
    let token: string | undefined;
    try {
      do {
        const res = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.options.bucket,
            Prefix: this.options.prefix + prefix,
            ContinuationToken: token,
            MaxKeys: Math.min(1000, max - out.length),
          }),
        );
        for (const o of res.Contents ?? [])
          if (o.Key && out.length < max) out.push(o.Key.slice(this.options.prefix.length));
        token = res.IsTruncated ? res.NextContinuationToken : undefined;
      } while (token && out.length < max);
    } catch (err) {
      throw this.fail('listing', prefix, err);
    }
    return out;
  }

  /** True when the bucket answers (a HEAD of a key that need not exist). */
  async reachable(): Promise<boolean> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.options.bucket, Key: this.key('.probe') }));
      return true;
    } catch (err) {
      return isMissing(err);
    }
  }

  close(): void {
    this.client.destroy();
  }
}

/**
 * The object-store config keys a service that reads or writes checkpoints adds to its shape (SPARK_STORE_*
 * in the environment). An empty `storeBucket` selects the filesystem store.
 */
export const objectStoreShape = {
  /** S3 API endpoint (empty: AWS's for `storeRegion`). */
  storeEndpoint: z.string().max(2048).default(''),
  /** Bucket; empty = no S3 store (the filesystem under the service's data directory). */
  storeBucket: z
    .string()
    .regex(
      /^([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])?$/,
      'an S3 bucket name (3-63 lower-case letters, digits, . -)',
    )
    .default(''),
  /** Key prefix inside the bucket (empty or ending with `/`). */
  storePrefix: z
    .string()
    .regex(/^([A-Za-z0-9._-]+\/)*$/, 'empty, or path segments each ending with /')
    .max(512)
    .default(''),
  storeRegion: z.string().min(1).max(64).default('us-east-1'),
  /** Explicit credentials (from a Secret); empty = the AWS SDK's default chain (AWS_* env, IRSA, …). */
  storeAccessKeyId: z.string().max(256).default(''),
  storeSecretAccessKey: z.string().max(1024).default(''),
  /** Path-style requests (MinIO, versitygw, most self-hosted stores). */
  storeForcePathStyle: z.boolean().default(true),
  /** Longest time one store request may take, in ms. */
  storeRequestTimeoutMs: z.number().int().min(1_000).max(3_600_000).default(300_000),
};

export type ObjectStoreConfig = {
  readonly [K in keyof typeof objectStoreShape]: z.infer<(typeof objectStoreShape)[K]>;
};

/** The configured S3 store, or null when `storeBucket` is empty. */
export function s3StoreFrom(config: ObjectStoreConfig): S3ObjectStore | null {
  if (!config.storeBucket) return null;
  return new S3ObjectStore({
    endpoint: config.storeEndpoint,
    region: config.storeRegion,
    bucket: config.storeBucket,
    prefix: config.storePrefix,
    accessKeyId: config.storeAccessKeyId,
    secretAccessKey: config.storeSecretAccessKey,
    forcePathStyle: config.storeForcePathStyle,
    requestTimeoutMs: config.storeRequestTimeoutMs,
  });
}

/** The configured store: S3 when `storeBucket` is set, else the filesystem below `fileRoot`. */
export function objectStoreFrom(config: ObjectStoreConfig, fileRoot: string): ObjectStore {
  return s3StoreFrom(config) ?? new FileObjectStore(fileRoot);
}
