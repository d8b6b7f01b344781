// The driver's pure pieces: spec defaults and validation, step accounting, deterministic prompt selection,
// warm-up batches, the lr horizon, eval item building (balanced, checkpoint-independent, verifiable with
// the real verifier) and the aggregation of verified groups into event metrics.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { judgeSetOf } from '@spark/method/evaluation';

import { InvalidArgumentError } from '@spark/runtime';
import { JOB_ID_PATTERN, type VerifiedGroup } from '@spark/contract';
import { Algorithm, JobSpec } from '@spark/protocol';

import { evalDue, parseCursor, stepPlan } from './driver.js';
import {
  aggregateEval,
  aggregatePhase,
  buildEvalItems,
  builtinDataset,
  epochOf,
  estimateOptimizerSteps,
  evalTagOf,
  fileDataset,
  promptsForStep,
  shardPrompts,
  stepsPerEpoch,
  totalSteps,
  warmupBatch,
  wrongAnswer,
} from './plan.js';
import { newJobId, normalizeSpec, SPEC_DEFAULTS, warmupLearningRate } from './spec.js';

const opts = { dataDir: '/tmp/spark-jobs', datasetDir: '/tmp/spark-datasets', jobId: 'j-1' };

describe('job spec', () => {
  it('warm-up lr: constant by default; cosine from the peak towards minLrRatio × peak after the last step', () => {
    const base = normalizeSpec(
      JobSpec.fromPartial({ warmupSteps: 100, warmupLearningRate: 3e-3, minLrRatio: 0.1 }),
      opts,
    );
    for (const step of [0, 50, 99]) assert.equal(warmupLearningRate(base, step), 3e-3);
    const cos = normalizeSpec(
      JobSpec.fromPartial({
        warmupSteps: 100,
        warmupLearningRate: 3e-3,
        minLrRatio: 0.1,
        warmupLrSchedule: 'cosine',
      }),
      opts,
    );
    assert.equal(warmupLearningRate(cos, 0), 3e-3);
    assert.ok(
      Math.abs(warmupLearningRate(cos, 50) - 3e-3 * 0.55) < 1e-12,
      'half-way: the mean of peak and floor',
    );
    const last = warmupLearningRate(cos, 99);
    assert.ok(last > 3e-4 && last < 3.01e-4, `the last step just above the floor: ${last}`);
    // monotone, never below the floor
    for (let w = 1; w < 100; w++) assert.ok(warmupLearningRate(cos, w) < warmupLearningRate(cos, w - 1));
    assert.ok(Math.abs(warmupLearningRate(cos, 1000) - 3e-4) < 1e-15, 'clamped at the floor');
  });

  it('fills every documented default', () => {
    const s = normalizeSpec(JobSpec.fromPartial({}), opts);
    assert.equal(s.algorithm, Algorithm.ALGORITHM_SPARK);
    assert.equal(s.batchSize, SPEC_DEFAULTS.batchSize);
    assert.equal(s.groupSize, 8);
    assert.equal(s.lrSchedule, 'cosine');
    assert.equal(s.warmupLrSchedule, 'constant');
    assert.equal(s.templateVariant, 'short');
    assert.equal(s.recyclePairwise, true);
    assert.equal(s.microBatchSize, 16);
    assert.equal(s.checkpointDir, '/tmp/spark-jobs/j-1');
    const kept = normalizeSpec(JobSpec.fromPartial({ recyclePairwise: false, miniBatchSize: 8 }), opts);
    assert.equal(kept.recyclePairwise, false, 'an explicit false is kept');
    assert.equal(kept.microBatchSize, 8, 'micro-batch defaults to at most the minibatch');
  });

  it('lists every bad field at once', () => {
    try {
      normalizeSpec(
        JobSpec.fromPartial({
          groupSize: 1,
          learningRate: Number.NaN,
          algorithm: 9 as Algorithm,
          trainSize: 3,
          batchSize: 4,
        }),
        opts,
      );
      assert.fail('accepted');
    } catch (e) {
      assert.ok(e instanceof InvalidArgumentError);
      const fields = e.problems.map((p) => p.split(':')[0]);
      assert.deepEqual(fields.sort(), ['algorithm', 'groupSize', 'learningRate', 'trainSize']);
    }
    assert.throws(
      () =>
        normalizeSpec(
          JobSpec.fromPartial({
            algorithm: Algorithm.ALGORITHM_GRPO_JUDGE,
            recyclePointwise: false,
            recyclePairwise: false,
          }),
          opts,
        ),
      /grpo-judge/,
    );
  });

  it('generates job ids that match the boundary pattern', () => {
    for (const name of ['', 'Demo run #1', '---', 'x'.repeat(300), 'ÄÖÜ'])
      assert.match(newJobId(name), JOB_ID_PATTERN);
    assert.notEqual(newJobId('a'), newJobId('a'));
  });
});

describe('plan', () => {
  const spec = normalizeSpec(
    JobSpec.fromPartial({ trainSize: 40, evalSize: 6, batchSize: 8, seed: 7, epochs: 2 }),
    opts,
  );
  const data = builtinDataset(spec);

  it('counts steps per epoch and bounds them by maxSteps', () => {
    assert.equal(stepsPerEpoch(40, 8), 5);
    assert.equal(stepsPerEpoch(41, 8), 5);
    assert.equal(totalSteps(spec, 40), 10);
    assert.equal(totalSteps({ ...spec, maxSteps: 3 }, 40), 3);
    assert.equal(epochOf(4, 40, 8), 0);
    assert.equal(epochOf(5, 40, 8), 1);
  });

  it('selects each training problem once per epoch, deterministically, reshuffled per epoch', () => {
    assert.equal(data.train.length, 40);
    const epoch0 = Array.from({ length: 5 }, (_, t) => promptsForStep(data.train, spec, t)).flat();
    assert.equal(new Set(epoch0.map((p) => p.promptId)).size, 40, 'every problem once');
    assert.deepEqual(
      promptsForStep(data.train, spec, 2),
      promptsForStep(data.train, spec, 2),
      'deterministic',
    );
    assert.notDeepEqual(
      promptsForStep(data.train, spec, 0).map((p) => p.promptId),
      promptsForStep(data.train, spec, 5).map((p) => p.promptId),
      'epoch 1 reshuffles',
    );
    const p = promptsForStep(data.train, spec, 0)[0];
    assert.equal(p?.kind, 'problem');
    assert.ok(p?.text.includes('\\boxed{}'), 'answer-format instruction appended');
    const other = builtinDataset({ ...spec, seed: 8 });
    assert.notDeepEqual(other.train, data.train, 'the seed changes the dataset');
  });

  it('keeps held-out problems out of training', () => {
    const train = new Set(data.train.map((p) => p.question));
    assert.equal(data.test.length, 6);
    for (const p of data.test) assert.ok(!train.has(p.question));
  });

  it('builds warm-up batches of worked solutions', () => {
    const b = warmupBatch(data.train, { ...spec, warmupBatchSize: 50, warmupJudgeFraction: 0 }, 0);
    assert.equal(b.length, 50, 'cycles past the end');
    for (const ex of b) assert.match(ex.target, /\\boxed\{-?\d+\}/);
    assert.deepEqual(warmupBatch(data.train, spec, 3), warmupBatch(data.train, spec, 3));
  });

  it('mixes judge-, reflection- and re-solve-format pairs with correct verdicts into warm-up batches', () => {
    const verdicts = new Map<string, number>();
    const test = new Set(data.test.map((p) => p.question));
    let judged = 0;
    for (let w = 0; w < 8; w++) {
      const b = warmupBatch(data.train, { ...spec, warmupBatchSize: 40, warmupJudgeFraction: 0.25 }, w);
      assert.equal(b.length, 40);
      const extra = b.filter((ex) => !data.train.some((p) => ex.prompt.startsWith(p.question)));
      assert.equal(extra.length, 10, 'a quarter of the batch');
      for (const ex of b.slice(0, 10)) {
        const verdict = /\\boxed\{(Yes|No|A|B)\}$/.exec(ex.target)?.[1];
        if (verdict) {
          judged++;
          verdicts.set(verdict, (verdicts.get(verdict) ?? 0) + 1);
          // the reasoning before the verdict computes the gold answer of a TRAIN problem
          const src = data.train.find((p) => ex.prompt.includes(p.question));
          assert.ok(src, 'judge pairs come from train problems');
          assert.ok(!test.has(src.question));
          const shown = /(?:Answer|Given): (\S+)/.exec(ex.prompt)?.[1];
          if (shown !== undefined && (verdict === 'Yes' || verdict === 'No'))
            assert.equal(verdict === 'Yes', shown === src.answer, `verdict of ${ex.prompt}`);
          // the explicit check (@spark/method compareCheck) compares each shown answer with the gold one,
          // and the verdict follows it
          const checks = [...ex.target.matchAll(/(-?\d+) vs (-?\d+): (?:\S\S[=x] )+(same|differ)\./g)];
          assert.ok(checks.length > 0, `a check before the verdict: ${ex.target}`);
          for (const [, left, right, outcome] of checks) {
            assert.equal(right, src.answer, 'compared against the gold answer');
            assert.equal(outcome === 'same', left === src.answer, `check in ${ex.target}`);
          }
          const same = checks.map((c) => c[3] === 'same');
          if (checks.length === 2) assert.equal(verdict, same[0] ? 'A' : 'B', 'pairwise slot');
          else assert.equal(verdict === 'A' || verdict === 'Yes', same[0], 'the verdict follows the check');
        } else {
          assert.match(
            ex.target,
            /\\boxed\{-?\d+\}$/,
            'reflection and re-solve pairs end in the gold answer',
          );
        }
      }
    }
    assert.ok(judged >= 40, `judge pairs: ${judged}`);
    for (const v of ['Yes', 'No', 'A', 'B']) assert.ok((verdicts.get(v) ?? 0) >= 4, `verdict ${v} drawn`);
  });

  it('estimates the optimizer-step horizon per algorithm', () => {
    const s = { ...spec, batchSize: 16, groupSize: 8, miniBatchSize: 64 };
    assert.equal(estimateOptimizerSteps(s, 10), 40);
    assert.equal(estimateOptimizerSteps({ ...s, algorithm: Algorithm.ALGORITHM_GRPO }, 10), 20);
    assert.equal(estimateOptimizerSteps({ ...s, algorithm: Algorithm.ALGORITHM_GRPO_JUDGE }, 10), 10);
  });

  it('plans the stages of a step per algorithm and the eval points', () => {
    assert.deepEqual(stepPlan('spark'), { synthesis: true, trainPolicy: true, rewardPhase: true });
    assert.deepEqual(stepPlan('grpo'), { synthesis: false, trainPolicy: true, rewardPhase: false });
    assert.deepEqual(stepPlan('grpo-judge'), { synthesis: true, trainPolicy: false, rewardPhase: true });
    assert.deepEqual(
      [1, 2, 3, 4, 5].filter((c) => evalDue(c, 5, 2)),
      [2, 4, 5],
    );
    assert.deepEqual(
      [1, 2, 3].filter((c) => evalDue(c, 3, 0)),
      [3],
    );
    assert.deepEqual(parseCursor('{"warmup":2,"evaluated":0,"step":3,"version":7}'), {
      warmup: 2,
      evaluated: 0,
      step: 3,
      version: 7,
    });
    assert.deepEqual(parseCursor('garbage'), { warmup: 0, evaluated: -1, step: 0, version: 0 });
  });

  it('shards prompts', () => {
    assert.deepEqual(
      shardPrompts([1, 2, 3, 4, 5], 2).map((s) => s.length),
      [2, 2, 1],
    );
  });
});

describe('file datasets', () => {
  it('holds out evalSize shuffled records and trains on the rest', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spark-plan-'));
    const file = join(dir, 'd.jsonl');
    const rows = Array.from({ length: 20 }, (_, i) =>
      JSON.stringify({ question: `What is ${i} + 1?`, answer: String(i + 1) }),
    );
    writeFileSync(file, `${rows.join('\n')}\n`);
    const spec = normalizeSpec(JobSpec.fromPartial({ dataset: file, evalSize: 4, batchSize: 8, seed: 2 }), {
      ...opts,
      datasetDir: dir,
    });
    const d = await fileDataset(spec);
    assert.equal(d.test.length, 4);
    assert.equal(d.train.length, 16);
    const all = new Set([...d.train, ...d.test].map((p) => p.question));
    assert.equal(all.size, 20, 'a partition of the records');
    assert.deepEqual(await fileDataset(spec), d, 'deterministic for a seed');
    assert.deepEqual(warmupBatch(d.train, spec, 0), [], 'no worked solutions, no warm-up pairs');
    await assert.rejects(fileDataset({ ...spec, batchSize: 17 }), /too few/);
  });
});

describe('eval items', () => {
  const test = [0, 1, 2, 3].map((i) => ({
    id: `q${i}`,
    question: `What is ${i} + 10?`,
    answer: String(i + 10),
    solution: null,
    family: i < 2 ? 'add' : 'sub',
  }));

  it('derives a wrong answer from the gold only', () => {
    assert.equal(wrongAnswer('12'), wrongAnswer('12'));
    assert.notEqual(wrongAnswer('12'), '12');
    assert.notEqual(Number(wrongAnswer('-5')), -5);
    assert.equal(wrongAnswer('x^2'), 'x^2 + 1');
  });

  it('builds five balanced items per held-out problem (and five diagnostic ones), unique ids, same for every call', () => {
    const items = buildEvalItems(test, 'short', 3);
    // problem, 3 standard judge items, reflection; then 2 option-order copies and 3 far-off-answer items
    assert.equal(items.length, 40);
    assert.equal(new Set(items.map((i) => i.promptId)).size, 40);
    assert.deepEqual(buildEvalItems(test, 'short', 3), items);
    const diag = items.filter((i) => judgeSetOf(i.tags) !== 'standard');
    assert.equal(diag.filter((i) => judgeSetOf(i.tags) === 'no-first').length, 8);
    assert.equal(diag.filter((i) => judgeSetOf(i.tags) === 'far').length, 12);
    const by = (tag: string) =>
      items.filter((i) => evalTagOf(i) === tag && judgeSetOf(i.tags) === 'standard');
    assert.deepEqual(
      by('pointwise-yesno').map((i) => i.label),
      ['Yes', 'No', 'Yes', 'No'],
    );
    assert.deepEqual(
      by('pointwise-ab').map((i) => i.label),
      ['B', 'A', 'B', 'A'],
    );
    assert.deepEqual(
      by('pairwise').map((i) => i.label),
      ['A', 'B', 'A', 'B'],
    );
    for (const r of by('reflection')) {
      assert.equal(r.kind, 'reflection');
      assert.ok(r.text.includes(wrongAnswer(r.label)), 'shows the wrong answer');
    }
    const pw = by('pairwise')[0];
    assert.ok(pw?.text.includes('10') && pw.text.includes(wrongAnswer('10')), 'both answers shown');
  });

  it('aggregates eval and phase metrics', () => {
    const items = buildEvalItems(test, 'short', 3);
    const groups: VerifiedGroup[] = items.map((prompt, i) => ({
      groupId: `0/eval/${prompt.promptId}`,
      prompt,
      promptTokens: [],
      policyVersion: 0,
      responses: [
        {
          text: prompt.kind === 'pointwise' || prompt.kind === 'pairwise' ? '\\boxed{x}' : 't',
          tokens: [],
          logprobs: [],
          finish: i % 7 === 0 ? 'length' : 'stop',
          reward: prompt.tags[0] === 'pairwise' || (prompt.kind === 'problem' && i < 2) ? 1 : 0,
          extracted: prompt.kind === 'problem' && i === 3 ? null : 'x',
          reason: '',
        },
      ],
    }));
    const m = aggregateEval(groups);
    assert.equal(m.problems, 4);
    assert.equal(m.answer_accuracy, 0.5);
    assert.equal(m.pairwise_accuracy, 1);
    assert.equal(m.pointwise_accuracy, 0);
    assert.equal(m.judge_accuracy, 1 / 3);
    assert.equal(m.reflection_accuracy, 0);
    assert.equal(m.answer_missing, 0.25);
    assert.equal(m.items, 40);
    // diagnostics: the verdicts here are all "x" (a box, not a verdict), every pairwise item is right
    assert.equal(m['pairwise_accuracy.gold_a'], 1);
    assert.equal(m['pairwise_accuracy.far'], 1);
    assert.equal(m['pointwise_accuracy.no_first'], 0);
    assert.equal(m['pointwise_accuracy.far'], 0);
    assert.equal(m.yesno_yes_share, 0);
    assert.equal(m.judge_no_verdict, 0);
    assert.equal(m.judge_box_before_verdict, 0);
    assert.equal(m['judge_accuracy.family.add'], 1 / 3);
    const p = aggregatePhase(groups);
    assert.equal(p.samples, 40);
    assert.equal(p['samples.problem'], 4);
    assert.equal(p['reward_mean.pairwise'], 1);
    assert.equal(p['judge_accuracy.pairwise'], 1);
    assert.equal((p.groups_all_correct ?? 0) + (p.groups_all_wrong ?? 0) + (p.groups_mixed ?? 0), 40);
    assert.equal(p.truncated_ratio, 6 / 40);
  });
});
