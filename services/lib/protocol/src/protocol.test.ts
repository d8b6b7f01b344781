import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { describe, it } from 'node:test';

import { JobSpec, Phase, Sample, SampleKind } from './index.js';

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

  it('encodes and decodes a sample with every provenance field', () => {
    const sample = Sample.fromPartial({
      sampleId: 'j/3/policy/p7/1',
      jobId: 'j',
      step: 3,
      phase: Phase.PHASE_POLICY,
      kind: SampleKind.SAMPLE_KIND_PROBLEM,
      groupId: 'j/3/policy/p7',
      index: 1,
      policyVersion: 12,
      prompt: {
        promptId: 'p7',
        text: '1+1=?',
        label: '2',
        kind: SampleKind.SAMPLE_KIND_PROBLEM,
        sourceGroupId: '',
      },
      response: '\\boxed{2}',
      responseTokens: [5, 6, 7],
      samplerLogprobs: [-0.5, -0.25, -1],
      reward: 1,
    });
    const back = Sample.decode(Sample.encode(sample).finish());
    assert.deepEqual(back, sample);
    assert.equal(
      Sample.decode(Sample.encode(Sample.fromPartial({ jobId: 'j' })).finish()).reward,
      undefined,
      'reward unset until verified',
    );
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
