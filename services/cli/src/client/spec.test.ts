import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { Algorithm, JobSpec } from '@spark/protocol';

import { parseSpecText, readSpecFile, SpecFileError, specFieldNames } from './spec.js';

function problemsOf(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof SpecFileError, String(err));
    return err.problems;
  }
  assert.fail('expected a SpecFileError');
}

describe('job spec files', () => {
  it('parses YAML with camelCase and snake_case names into a JobSpec', () => {
    const spec = parseSpecText(
      'name: demo\nalgorithm: grpo-judge\nbatchSize: 16\ngroup_size: 8\nlearningRate: 0.001\nrecyclePairwise: false\n',
    );
    assert.equal(spec.name, 'demo');
    assert.equal(spec.algorithm, Algorithm.ALGORITHM_GRPO_JUDGE);
    assert.equal(spec.batchSize, 16);
    assert.equal(spec.groupSize, 8);
    assert.equal(spec.learningRate, 0.001);
    assert.equal(spec.recyclePairwise, false);
    assert.equal(spec.recyclePointwise, undefined);
  });

  it('parses JSON too', () => {
    assert.equal(
      parseSpecText('{"model": "tiny", "algorithm": "ALGORITHM_SPARK"}').algorithm,
      Algorithm.ALGORITHM_SPARK,
    );
  });

  it('lists every problem at once: unknown keys, wrong types, bad algorithm', () => {
    const problems = problemsOf(() =>
      parseSpecText(
        'batchSize: -1\ngroupSize: 2.5\nfoo: 1\nbar_baz: x\nalgorithm: ppo\ntemperature: hot\nname: 3\n',
      ),
    );
    assert.match(problems[0] ?? '', /unknown keys: foo, bar_baz/);
    assert.ok(problems.some((p) => p.startsWith('batchSize:')));
    assert.ok(problems.some((p) => p.startsWith('groupSize:')));
    assert.ok(problems.some((p) => /algorithm: expected one of spark, grpo, grpo-judge/.test(p)));
    assert.ok(problems.some((p) => p.startsWith('temperature:')));
    assert.ok(problems.some((p) => p.startsWith('name: expected text')));
    assert.equal(problems.length, 6);
  });

  it('rejects a non-mapping, bad YAML, a missing file and an oversized file', () => {
    assert.match(problemsOf(() => parseSpecText('- 1\n- 2\n'))[0] ?? '', /must be a mapping/);
    assert.match(problemsOf(() => parseSpecText('a: [1,'))[0] ?? '', /not valid YAML/);
    assert.match(problemsOf(() => readSpecFile('/nonexistent/job.yaml'))[0] ?? '', /not found/);
    const dir = mkdtempSync(join(tmpdir(), 'spec-'));
    const big = join(dir, 'big.yaml');
    writeFileSync(big, `name: ${'x'.repeat(300 * 1024)}\n`);
    assert.match(problemsOf(() => readSpecFile(big))[0] ?? '', /larger than/);
  });

  it('knows every field of the generated JobSpec', () => {
    const names = new Set(specFieldNames());
    for (const k of Object.keys(JobSpec.fromPartial({}))) assert.ok(names.has(k), k);
  });
});
