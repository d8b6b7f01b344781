// The demo's report files from a job's events: results.json holds every figure of the table and the
// curves, curves.svg one polyline per series, results.md the table. (The demo's cluster run itself is
// exercised end to end by test/e2e.test.ts through the same launcher, client and report code.)
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { JobEvent, JobEventType, JobState, JobStatus, Phase } from '@spark/protocol';

import { computeResults } from '../report/results.js';
import { demoJobSpec } from './demo-job.js';
import { machineInfo, modelParams, reproduceEnv, writeDemoReport } from './demo.js';

describe('spark demo report', () => {
  it('writes results.json, results.md and curves.svg from the events', async () => {
    const ev = (
      seq: number,
      type: JobEventType,
      step: number,
      phase: Phase,
      metrics: Record<string, number>,
      message = '',
    ) =>
      JobEvent.fromPartial({
        jobId: 'd1',
        seq,
        type,
        step,
        phase,
        metrics,
        message,
        state: JobState.JOB_STATE_RUNNING,
      });
    const events = [
      ev(1, JobEventType.JOB_EVENT_TYPE_PHASE, 0, Phase.PHASE_WARMUP, { loss: 2 }),
      ev(
        2,
        JobEventType.JOB_EVENT_TYPE_EVAL,
        0,
        Phase.PHASE_EVAL,
        {
          answer_accuracy: 0.25,
          pointwise_accuracy: 0.5,
          pairwise_accuracy: 0.5,
          reflection_accuracy: 0.125,
        },
        'before RL',
      ),
      ev(3, JobEventType.JOB_EVENT_TYPE_PHASE, 0, Phase.PHASE_POLICY, {
        reward_mean: 0.3,
        'reward_mean.problem': 0.3,
      }),
      ev(4, JobEventType.JOB_EVENT_TYPE_PHASE, 0, Phase.PHASE_REWARD, {
        'reward_mean.pointwise': 0.6,
        'reward_mean.reflection': 0.1,
      }),
      ev(
        5,
        JobEventType.JOB_EVENT_TYPE_EVAL,
        1,
        Phase.PHASE_EVAL,
        {
          answer_accuracy: 0.375,
          pointwise_accuracy: 0.75,
          pairwise_accuracy: 0.625,
          reflection_accuracy: 0.25,
        },
        'after 1 steps',
      ),
    ];
    const spec = demoJobSpec({ quick: true });
    const out = mkdtempSync(join(tmpdir(), 'demo-report-'));
    const outcome = {
      status: JobStatus.fromPartial({ jobId: 'd1', spec, state: JobState.JOB_STATE_SUCCEEDED }),
      events,
      state: 'SUCCEEDED',
    };
    const { table, files } = writeDemoReport(out, {
      jobId: 'd1',
      spec,
      outcome,
      results: computeResults(events),
      events,
      wallSeconds: 12.3,
      machine: await machineInfo(await modelParams('tiny')),
    });
    assert.equal(files.length, 3);
    assert.match(table, /held-out answer accuracy\s+25\.0\s+37\.5\s+\+12\.5/);
    const doc = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as {
      state: string;
      table: { key: string; before: number; after: number }[];
      phases: { phase: string }[];
      spec: { model: string };
      evals: unknown[];
      machine: { cpu: string; cores: number; gemm: string; threads: number; sampleMode: string };
    };
    assert.equal(doc.state, 'SUCCEEDED');
    // what computed the run, from the real addon of this machine
    assert.equal(doc.machine.cpu, cpus()[0]?.model);
    assert.match(doc.machine.gemm, /^(blas|builtin|scalar)$/);
    assert.ok(doc.machine.threads >= 1);
    // the sampler's mode for the job's model (the tiny preset's 0.4 MB fits any cache rule: groups)
    assert.equal(doc.machine.sampleMode, 'groups');
    assert.deepEqual(
      doc.table.find((r) => r.key === 'pairwise'),
      {
        key: 'pairwise',
        label: 'pairwise judge accuracy',
        baseline: null,
        before: 0.5,
        after: 0.625,
        change: 0.125,
      },
    );
    assert.deepEqual(
      doc.phases.map((p) => p.phase),
      ['warmup', 'policy', 'reward'],
    );
    assert.equal(doc.spec.model, 'tiny');
    assert.equal(doc.evals.length, 2);
    const svg = readFileSync(join(out, 'curves.svg'), 'utf8');
    const series = [...svg.matchAll(/<polyline data-series="([^"]*)"/g)].map((m) => m[1]);
    assert.deepEqual(series, [
      'problem reward',
      'pointwise reward',
      'reflection reward',
      'held-out answer',
      'pointwise judge',
      'pairwise judge',
      'reflection success',
    ]);
    const md = readFileSync(join(out, 'results.md'), 'utf8');
    assert.match(md, /!\[training curves\]\(curves\.svg\)/);
    // how to follow this run's path elsewhere: the path, kernel set and threads this machine used
    assert.ok(md.includes(`${reproduceEnv(doc.machine)} npm run demo`), md);
  });

  void it('names the environment that reproduces a run: GEMM path, OpenBLAS kernel set, threads, sampling mode', () => {
    const cpu = 'x';
    assert.equal(
      reproduceEnv({ cpu, gemm: 'blas', blasCore: 'SkylakeX', threads: 2 }),
      'SPARK_GEMM=blas OPENBLAS_CORETYPE=SkylakeX SPARK_THREADS=2',
    );
    assert.equal(reproduceEnv({ cpu, gemm: 'builtin', threads: 4 }), 'SPARK_GEMM=builtin SPARK_THREADS=4');
    // a kernel-set name that is not a plain word is not pasted into a shell line
    assert.equal(
      reproduceEnv({ cpu, gemm: 'blas', blasCore: 'a b; rm', threads: 1 }),
      'SPARK_GEMM=blas SPARK_THREADS=1',
    );
    // the sampler's mode, when the record has it
    assert.equal(
      reproduceEnv({ cpu, gemm: 'blas', blasCore: 'Zen', threads: 2, sampleMode: 'split' }),
      'SPARK_GEMM=blas OPENBLAS_CORETYPE=Zen SPARK_THREADS=2 SPARK_SAMPLE_MODE=split',
    );
    assert.equal(
      reproduceEnv({ cpu, gemm: 'builtin', threads: 1, sampleMode: '$(x)' }),
      'SPARK_GEMM=builtin SPARK_THREADS=1',
    );
    // no backend (the addon did not load): nothing to reproduce with
    assert.equal(reproduceEnv({ cpu, backendError: 'not built' }), undefined);
    assert.equal(reproduceEnv(undefined), undefined);
  });
});
