import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';

import {
  GetPolicyResponse,
  JobEvent,
  JobEventType,
  JobSpec,
  JobState,
  Phase,
  PolicyHeader,
} from './index.js';

const repoRoot = join(import.meta.dirname, '../../../..');
const committed = join(repoRoot, 'services/lib/protocol/src/gen');

function listFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) out.push(...listFiles(full));
    else out.push(full);
  }
  return out.sort();
}

describe('protocol', () => {
  it('generated code is up to date with proto/ (run `pnpm proto:gen` when this fails)', () => {
    const out = mkdtempSync(join(tmpdir(), 'spark-proto-'));
    try {
      const r = spawnSync(join(repoRoot, 'node_modules/.bin/buf'), ['generate', '--output', out], {
        cwd: repoRoot,
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, `buf generate failed: ${r.stderr}`);
      const fresh = join(out, 'services/lib/protocol/src/gen');
      const freshFiles = listFiles(fresh).map((f) => relative(fresh, f));
      const committedFiles = listFiles(committed).map((f) => relative(committed, f));
      assert.deepEqual(committedFiles, freshFiles, 'the set of generated files differs');
      for (const f of freshFiles) {
        assert.equal(
          readFileSync(join(committed, f), 'utf8'),
          readFileSync(join(fresh, f), 'utf8'),
          `${f} is stale`,
        );
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  });

  it('encodes and decodes a phase event with its metrics', () => {
    const event = JobEvent.fromPartial({
      jobId: 'j',
      seq: 12,
      type: JobEventType.JOB_EVENT_TYPE_PHASE,
      state: JobState.JOB_STATE_RUNNING,
      step: 3,
      phase: Phase.PHASE_POLICY,
      metrics: { reward_mean: 0.5, samples: 64 },
      message: '',
      timeMs: 1_765_000_000_000,
    });
    const back = JobEvent.decode(JobEvent.encode(event).finish());
    assert.deepEqual(back, event);
    assert.deepEqual(JobEvent.fromJSON(JobEvent.toJSON(event)), event);
    assert.equal(
      JobEvent.decode(JobEvent.encode(JobEvent.fromPartial({})).finish()).phase,
      Phase.PHASE_UNSPECIFIED,
    );
  });

  it('encodes and decodes a policy stream header and chunk', () => {
    const header = PolicyHeader.fromPartial({
      jobId: 'j',
      version: 4,
      configJson: '{"hidden_size":64}',
      totalBytes: 4096,
      sha256: 'ab'.repeat(32),
      chunkBytes: 1024,
    });
    const msg = GetPolicyResponse.fromPartial({ part: { $case: 'header', value: header } });
    assert.deepEqual(GetPolicyResponse.decode(GetPolicyResponse.encode(msg).finish()), msg);
  });

  it('round-trips a job spec through JSON', () => {
    const spec = JobSpec.fromPartial({
      name: 'demo',
      batchSize: 64,
      groupSize: 8,
      learningRate: 5e-7,
      seed: 7,
    });
    assert.deepEqual(JobSpec.fromJSON(JobSpec.toJSON(spec)), spec);
  });
});
