// `spark submit` with a dataset file on the caller's disk, against a real coordinator (real gRPC, real
// Redis): the file is uploaded (JobService.UploadDataset) and the job runs on the stored copy; the same
// file again is found on the cluster; a too-large or unusable file, and --no-upload with a path outside
// the cluster's roots, exit 1 with the reason. The coordinator runs as `spark up` launches it.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, realpathSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { JobClient } from '../client/index.js';
import { startLocalCluster, type LocalCluster } from '../launcher/index.js';
import { runSpark } from '../testing.js';

const top = realpathSync(mkdtempSync(join(tmpdir(), 'spark-submit-up-')));
const datasetDir = join(top, 'cluster', 'datasets');
const MAX = 32 * 1024;
const rows = `${Array.from({ length: 30 }, (_, i) => JSON.stringify({ question: `${i} + 5 = ?`, answer: String(i + 5) })).join('\n')}\n`;

describe('spark submit uploads a local dataset file', () => {
  let cluster: LocalCluster;
  let address: string;
  before(async () => {
    // the coordinator process as `spark up` starts it (dataset root <dataDir>/datasets), small upload limit
    cluster = await startLocalCluster({
      dataDir: join(top, 'cluster'),
      services: ['coordinator'],
      env: { SPARK_UPLOAD_MAX_BYTES: String(MAX), SPARK_LOG_LEVEL: 'warn' },
    });
    address = cluster.coordinatorAddress;
    mkdirSync(join(top, 'mine'));
    writeFileSync(join(top, 'mine', 'data.jsonl'), rows);
    writeFileSync(
      join(top, 'mine', 'job.yaml'),
      'name: up\ndataset: data.jsonl\nbatchSize: 4\ngroupSize: 2\nevalSize: 4\n',
    );
  });
  after(async () => {
    await cluster?.stop();
  });

  it('uploads, submits with the stored copy, and finds it on the cluster the second time', async () => {
    const sha = createHash('sha256').update(rows).digest('hex');
    const r = await runSpark(['submit', join(top, 'mine', 'job.yaml'), '--address', address]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`uploaded as sha256:${sha} \\(30 records, 0 bad lines\\)`));
    const jobId = r.stdout.trim();
    const client = new JobClient({ address, token: null });
    try {
      const status = await client.get(jobId);
      assert.equal(status.spec?.dataset, join(datasetDir, 'uploads', 'sha256', `${sha}.jsonl`));
    } finally {
      client.close();
    }
    const again = await runSpark(['submit', join(top, 'mine', 'job.yaml'), '--address', address]);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, new RegExp(`already on the cluster as sha256:${sha}`));
  });

  it('exits 1 with the reason for a too-large file, an unusable one, and a path outside the roots', async () => {
    writeFileSync(join(top, 'mine', 'big.jsonl'), rows.repeat(Math.ceil((MAX + 1) / rows.length)));
    writeFileSync(join(top, 'mine', 'bad.jsonl'), 'not json\n{"x": 1}\n');
    const spec = (dataset: string, extra = '') => {
      const f = join(top, 'mine', `job-${dataset.replace(/\W/g, '')}.yaml`);
      writeFileSync(f, `dataset: ${dataset}\n${extra}`);
      return f;
    };
    const big = await runSpark(['submit', spec('big.jsonl'), '--address', address]);
    assert.equal(big.code, 1);
    assert.match(big.stderr, /uploading big\.jsonl failed \(RESOURCE_EXHAUSTED\): .* at most 32768 bytes/);
    const bad = await runSpark(['submit', spec('bad.jsonl', 'datasetFormat: jsonl\n'), '--address', address]);
    assert.equal(bad.code, 1);
    assert.match(
      bad.stderr,
      /uploading bad\.jsonl was rejected as invalid:\n {2}- dataset: no usable record/,
    );
    const raw = await runSpark(['submit', spec('data.jsonl'), '--no-upload', '--address', address]);
    assert.equal(raw.code, 1);
    assert.match(
      raw.stderr,
      /dataset: "data\.jsonl" is neither "builtin" nor a readable file below the allowed roots/,
    );
  });
});
