// The ObjectStore contract, run against both implementations: the filesystem store, and the S3 store
// against a real S3-compatible server (versitygw, started here; see testing/s3.ts for when it skips).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { InvalidArgumentError, ResourceExhaustedError, UnavailableError } from '../errors/index.js';
import { freePort } from '../redis/index.js';
import { s3Skip, startTestS3, VERSITYGW_VERSION, type TestS3 } from '../testing/index.js';
import { FileObjectStore, objectStoreFrom, S3ObjectStore, type ObjectStore } from './index.js';

const scratch = mkdtempSync(join(tmpdir(), 'spark-store-test-'));

function contract(name: string, open: () => Promise<ObjectStore>, skip: string | false = false): void {
  describe(`ObjectStore contract: ${name}`, { skip }, () => {
    let store: ObjectStore;
    before(async () => {
      store = await open();
    });
    after(() => store?.close());

    it('round-trips bytes and files, replaces, and answers null/false for a missing key', async () => {
      await store.putBytes('a/latest.json', Buffer.from('{"v":1}'));
      assert.equal((await store.getBytes('a/latest.json', 100))?.toString(), '{"v":1}');
      await store.putBytes('a/latest.json', Buffer.from('{"v":2}'));
      assert.equal((await store.getBytes('a/latest.json', 100))?.toString(), '{"v":2}');
      assert.equal(await store.getBytes('a/none.json', 100), null);
      assert.equal(await store.getFile('a/none.json', join(scratch, `none-${name}`), 100), false);
      assert.equal(existsSync(join(scratch, `none-${name}`)), false);

      const big = randomBytes(3 * 1024 * 1024 + 17);
      const src = join(scratch, `big-${name}.bin`);
      writeFileSync(src, big);
      await store.putFile('a/step-1/model.safetensors', src);
      const dst = join(scratch, `out-${name}`, 'model.safetensors');
      assert.equal(await store.getFile('a/step-1/model.safetensors', dst, big.length), true);
      assert.ok(readFileSync(dst).equals(big), 'the same bytes come back');
    });

    it('refuses objects beyond maxBytes without leaving a partial file', async () => {
      await store.putBytes('b/blob', Buffer.alloc(1000, 7));
      await assert.rejects(store.getBytes('b/blob', 999), ResourceExhaustedError);
      const dst = join(scratch, `partial-${name}`);
      await assert.rejects(store.getFile('b/blob', dst, 999), ResourceExhaustedError);
      assert.equal(existsSync(dst), false);
    });

    it('lists keys below a prefix in order, bounded', async () => {
      for (const k of ['c/step-2/x', 'c/step-1/y', 'c/latest.json', 'cc/other'])
        await store.putBytes(k, Buffer.from(k));
      assert.deepEqual(await store.list('c/', 100), ['c/latest.json', 'c/step-1/y', 'c/step-2/x']);
      assert.deepEqual(await store.list('c/', 2), ['c/latest.json', 'c/step-1/y']);
      assert.deepEqual(await store.list('zz/', 10), []);
      assert.deepEqual(await store.list('c/la', 10), ['c/latest.json'], 'a prefix that ends inside a name');
      assert.deepEqual(await store.list('c/latest.json', 1), ['c/latest.json'], 'a whole key');
      assert.deepEqual(await store.list('c', 10), ['c/latest.json', 'c/step-1/y', 'c/step-2/x', 'cc/other']);
    });

    it('refuses keys that could leave the store', async () => {
      for (const bad of ['../etc/passwd', '/abs', 'a/../../b', 'a//b', '', 'a/./b', 'sp ace'])
        await assert.rejects(store.putBytes(bad, Buffer.from('x')), InvalidArgumentError, bad);
    });
  });
}

contract('filesystem', async () => new FileObjectStore(mkdtempSync(join(tmpdir(), 'spark-fs-store-'))));

let s3: TestS3 | null = null;
contract(
  'S3 (versitygw)',
  async () => {
    s3 = await startTestS3();
    return objectStoreFrom(
      {
        storeEndpoint: s3.endpoint,
        storeBucket: s3.bucket,
        storePrefix: 'spark/',
        storeRegion: s3.region,
        storeAccessKeyId: s3.accessKeyId,
        storeSecretAccessKey: s3.secretAccessKey,
        storeForcePathStyle: true,
        storeRequestTimeoutMs: 30_000,
      },
      '/unused',
    );
  },
  s3Skip(),
);

describe('S3 store failures', { skip: s3Skip() }, () => {
  after(async () => {
    await s3?.stop();
  });

  it('stores below the prefix (objects are files of the posix backend)', async () => {
    assert.ok(s3, 'the contract suite started the server');
    assert.ok(existsSync(join(s3.dir, s3.bucket, 'spark', 'a', 'latest.json')));
  });

  it('answers UNAVAILABLE naming the store for bad credentials and an unreachable endpoint', async () => {
    assert.ok(s3);
    const opts = {
      endpoint: s3.endpoint,
      region: s3.region,
      bucket: s3.bucket,
      prefix: '',
      accessKeyId: s3.accessKeyId,
      secretAccessKey: 'wrong',
      forcePathStyle: true,
      requestTimeoutMs: 5_000,
    };
    const wrong = new S3ObjectStore(opts);
    await assert.rejects(wrong.getBytes('a/latest.json', 100), (err: Error) => {
      assert.ok(err instanceof UnavailableError, String(err));
      assert.match(
        err.message,
        new RegExp(`object store s3://${s3?.bucket}/ .*reading a/latest.json failed`),
      );
      return true;
    });
    wrong.close();
    const nowhere = new S3ObjectStore({ ...opts, endpoint: `http://127.0.0.1:${await freePort()}` });
    await assert.rejects(nowhere.putBytes('x', Buffer.from('x')), UnavailableError);
    nowhere.close();
  });
});

describe('the S3 server pin', () => {
  it('is the version .ci/run builds', () => {
    const ci = readFileSync(join(import.meta.dirname, '../../../../../.ci/run'), 'utf8');
    assert.match(ci, new RegExp(`^versitygw_version=${VERSITYGW_VERSION.replaceAll('.', '\\.')}$`, 'm'));
  });
});
