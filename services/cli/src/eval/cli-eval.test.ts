// End-to-end tests of `spark eval`, `spark score` and `spark infer`: the real CLI as a subprocess on a tiny
// checkpoint made here (the `tiny` preset, briefly fine-tuned so it writes boxed answers) and tiny files —
// outputs, summary semantics against the written results, malformed records (reported, not fatal), an
// empty file (clear error, non-zero exit), the real-model self-reflection path and the reward benchmark.
import assert from 'node:assert/strict';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  summarize,
  type AccuracySummary,
  type EvaluatedProblem,
  type JudgeDiagnostics,
} from '@spark/method/evaluation';

import { makeTinyCheckpoint } from '@spark/method/checkpoint';

import { runSpark } from '../testing.js';

// the shared runner: bounded (a hung command is killed and says so), no SPARK_ADDRESS/TOKEN from outside
const spark = (args: string[]) => runSpark(args);

async function readJsonl<T>(path: string): Promise<T[]> {
  return (await readFile(path, 'utf8'))
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);
}

const FAST = ['--max-new-tokens', '48', '--batch', '8'];

// the cases are independent (own output folders) and mostly wait on subprocesses: run them side by side
describe('spark eval / score / infer on a tiny checkpoint', { concurrency: 3 }, () => {
  let dir: string;
  let ckpt: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-eval-'));
    ckpt = join(dir, 'ckpt');
    await makeTinyCheckpoint(ckpt, 60);
  });
  after(async () => rm(dir, { recursive: true, force: true }));

  it('eval on the built-in test split writes results.jsonl and a summary that matches them', async () => {
    const out = join(dir, 'split');
    const r = await spark(['eval', ckpt, '--count', '8', '--out', out, ...FAST]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /mean \(unweighted\)\s+8/);
    const results = await readJsonl<EvaluatedProblem>(join(out, 'results.jsonl'));
    assert.equal(results.length, 8);
    for (const x of results) {
      for (const k of ['dataset', 'problem', 'answer', 'output', 'extracted', 'correct'] as const)
        assert.ok(k in x, k);
      assert.match(x.dataset, /^syn-/);
    }
    // the fine-tuned tiny model writes boxed answers
    assert.ok(results.some((x) => x.extracted !== null));
    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')) as {
      kind: string;
      answers: AccuracySummary;
    };
    assert.equal(summary.kind, 'problems');
    assert.deepEqual(summary.answers, summarize(results));

    // spark score re-scores the same file to the same summary
    const s = await spark(['score', join(out, 'results.jsonl'), '--json']);
    assert.equal(s.code, 0, s.stderr);
    assert.deepEqual((JSON.parse(s.stdout) as { answers: AccuracySummary }).answers, summary.answers);
  });

  it('eval on files reports malformed and image records without failing', async () => {
    const file = join(dir, 'mixed.jsonl');
    await writeFile(
      file,
      [
        JSON.stringify({ dataset: 'alpha', problem: '2+3=?', answer: '5', image_path: '' }),
        '{"dataset": "alpha", "problem": "oops"',
        JSON.stringify({ dataset: 'alpha', problem: '7-4=?', answer: 3 }),
        JSON.stringify({ dataset: 'beta', problem: 'no answer here' }),
        JSON.stringify({ dataset: 'beta', problem: 'What is shown?', answer: '1', image_path: 'img/1.png' }),
        JSON.stringify({ dataset: 'beta', problem: '6*2=?', answer: '12', image_path: null }),
      ].join('\n') + '\n',
    );
    const out = join(dir, 'files');
    const r = await spark(['eval', ckpt, file, '--out', out, ...FAST]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /skipped 3 line\(s\) \(1 with images/);
    assert.match(r.stderr, /mixed\.jsonl:2: invalid JSON/);
    assert.match(r.stderr, /mixed\.jsonl:4: missing required field "answer"/);
    assert.match(r.stderr, /mixed\.jsonl:5: .*image/);
    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')) as {
      input: { skipped: number; imageRecords: number; records: number };
      answers: AccuracySummary;
    };
    assert.equal(summary.input.skipped, 3);
    assert.equal(summary.input.imageRecords, 1);
    assert.deepEqual(
      summary.answers.datasets.map((d) => [d.dataset, d.count]),
      [
        ['alpha', 2],
        ['beta', 1],
      ],
    );
    const results = await readJsonl<EvaluatedProblem>(join(out, 'results.jsonl'));
    assert.deepEqual(
      results.map((x) => x.answer),
      ['5', '3', '12'],
    );
  });

  it('eval on an empty file fails with a clear message and a non-zero exit', async () => {
    const file = join(dir, 'empty.jsonl');
    await writeFile(file, '\n\n');
    const [r, bad, both, zero] = await Promise.all([
      spark(['eval', ckpt, file]),
      spark(['eval', join(dir, 'no-such-checkpoint'), '--count', '2']),
      spark(['eval', ckpt, '--reflect', '--judge']),
      spark(['eval', ckpt, '--batch', '0']),
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /empty\.jsonl: the dataset is empty/);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /cannot load checkpoint/);
    assert.equal(both.code, 1);
    assert.match(both.stderr, /--reflect and --judge are separate runs/);
    assert.equal(zero.code, 1);
    assert.match(zero.stderr, /--batch must be an integer in \[1, 4096\], got 0/);
  });

  it('eval --reflect runs self-reflection with the real model (at most 5 calls per item)', async () => {
    const out = join(dir, 'reflect');
    const r = await spark(['eval', ckpt, '--count', '4', '--reflect', '--out', out, ...FAST]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /no-reflect\s+reflect/);
    assert.match(r.stdout, /self-judge: \d+ verdicts/);
    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')) as {
      withoutReflection: AccuracySummary;
      reflection: { items: number; maxCallsPerItem: number; modelCalls: number };
    };
    assert.equal(summary.reflection.items, 4);
    assert.ok(summary.reflection.maxCallsPerItem <= 5 && summary.reflection.maxCallsPerItem >= 1);
    const results = await readJsonl<EvaluatedProblem>(join(out, 'results.jsonl'));
    assert.equal(
      results.reduce((s, x) => s + (x.reflection?.trace.length ?? 0), 0),
      summary.reflection.modelCalls,
    );
    assert.equal(summary.withoutReflection.count, 4);
  });

  it("eval defaults to the checkpoint's task mix; --families / --difficulties override it", async () => {
    // a learner checkpoint root whose trainer_state.json records the mix (add and sub at level 1)
    const root = join(dir, 'mixed');
    const step = join(root, 'step-2');
    await mkdir(step, { recursive: true });
    for (const f of ['config.json', 'model.safetensors']) await copyFile(join(ckpt, f), join(step, f));
    await writeFile(join(root, 'latest.json'), JSON.stringify({ dir: 'step-2', step: 2 }));
    const state = {
      jobId: 'j',
      step: 2,
      phase: 'policy',
      policyVersion: 4,
      optimizerSteps: 4,
      rlOptimizerSteps: 4,
      totalOptimizerSteps: null,
      schedule: { kind: 'cosine', warmupRatio: 0.03, minLrRatio: 0.1 },
      learningRate: null,
      savedAt: '2026-01-01T00:00:00.000Z',
      taskMix: { dataset: 'builtin', families: ['add', 'sub'], difficulties: [1] },
    };
    await writeFile(join(step, 'trainer_state.json'), JSON.stringify(state));
    type Out = {
      settings: { taskMix: { families: string[]; difficulties: number[]; from: string } };
      answers: AccuracySummary;
    };
    const run = async (args: string[]): Promise<Out> => {
      const r = await spark(['eval', ...args, '--count', '6', '--json', ...FAST]);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Out;
    };
    const [own, flags, plain] = await Promise.all([
      run([root]),
      run([root, '--families', 'mul', '--difficulties', '2,3']),
      run([ckpt]),
    ]);
    assert.deepEqual(own.settings.taskMix, {
      families: ['add', 'sub'],
      difficulties: [1],
      from: 'checkpoint',
    });
    assert.ok(own.answers.datasets.every((d) => ['syn-add', 'syn-sub'].includes(d.dataset)));
    assert.deepEqual(flags.settings.taskMix, { families: ['mul'], difficulties: [2, 3], from: 'flags' });
    assert.deepEqual(
      flags.answers.datasets.map((d) => d.dataset),
      ['syn-mul'],
    );
    // no trainer_state.json (a Model.save checkpoint): the demo mix
    assert.equal(plain.settings.taskMix.from, 'default');
    assert.deepEqual(plain.settings.taskMix.difficulties, [1, 2]);
    const [bad, mixed, broken] = await Promise.all([
      spark(['eval', root, '--families', 'add,nope']),
      spark(['eval', root, join(dir, 'x.jsonl'), '--difficulties', '1']),
      (async () => {
        const b = join(dir, 'broken');
        await mkdir(b, { recursive: true });
        for (const f of ['config.json', 'model.safetensors']) await copyFile(join(ckpt, f), join(b, f));
        await writeFile(join(b, 'trainer_state.json'), '{"jobId": 1}');
        return spark(['eval', b, '--count', '2']);
      })(),
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--families must be a comma-separated list of distinct families/);
    assert.equal(mixed.code, 1);
    assert.match(mixed.stderr, /do not apply to DATA files/);
    assert.equal(broken.code, 1);
    assert.match(broken.stderr, /cannot read .*trainer_state\.json/);
  });

  it('eval --judge runs the reward benchmark on balanced items and its diagnostics', async () => {
    const out = join(dir, 'judge');
    const r = await spark(['eval', ckpt, '--count', '4', '--judge', '--out', out, ...FAST]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /pointwise-yesno\s+4/);
    assert.match(r.stdout, /mean \(pointwise, pairwise\)/);
    for (const table of [
      'option order',
      'verdicts \\(standard items\\)',
      'wrong answer shown',
      'margin AUC',
      'family',
    ])
      assert.match(r.stdout, new RegExp(table));
    const summary = JSON.parse(await readFile(join(out, 'summary.json'), 'utf8')) as {
      kind: string;
      items: number;
      judge: { pointwise: { count: number }; pairwise: { count: number }; mean: number };
      diagnostics: JudgeDiagnostics;
      ownMistakes: { sampling: string; draws: number; samples: number; problems: number };
    };
    assert.equal(summary.kind, 'judge');
    // the headline is the 12 standard items (3 per problem); then 2 option-order copies and 3 far-off
    // items per problem, and 3 per own mistake
    assert.equal(summary.judge.pointwise.count, 8);
    assert.equal(summary.judge.pairwise.count, 4);
    const d = summary.diagnostics;
    const own = summary.ownMistakes;
    assert.deepEqual(d.sets, {
      standard: 12,
      'no-first': 8,
      far: 12,
      ...(own.problems ? { own: 3 * own.problems } : {}),
    });
    assert.equal(summary.items, 32 + 3 * own.problems);
    assert.equal((await readJsonl(join(out, 'results.jsonl'))).length, summary.items);
    assert.equal(own.sampling, 'temperature 1.0');
    assert.equal(own.draws, 4);
    assert.ok(own.samples >= 4 && own.samples <= 16, String(own.samples));
    assert.equal(d.byOrder.pointwise?.['yes-first']?.count, 8);
    assert.equal(d.byOrder.pointwise?.['no-first']?.count, 8);
    assert.equal(d.byOrder.pairwise?.['gold-A']?.count, 2);
    assert.ok(Object.keys(d.byFamily).every((f) => f.startsWith('syn-')));
    assert.equal(d.wrongAnswers.far?.pointwise.count, 8);
    // every item fits the tiny model's context, so every one has a teacher-forced margin
    assert.equal(d.auc?.scored, summary.items);
    for (const v of Object.values(d.auc?.styles ?? {})) assert.ok(v !== null && v >= 0 && v <= 1);
    const noOwn = await spark([
      'eval',
      ckpt,
      '--count',
      '2',
      '--judge',
      '--own-draws',
      '0',
      '--json',
      ...FAST,
    ]);
    assert.equal(noOwn.code, 0, noOwn.stderr);
    assert.equal((JSON.parse(noOwn.stdout) as { ownMistakes: { samples: number } }).ownMistakes.samples, 0);
  });

  it('score re-scores foreign results files, reports malformed lines, rejects an empty file', async () => {
    const file = join(dir, 'foreign.jsonl');
    await writeFile(
      file,
      [
        JSON.stringify({ dataset: 'm', ground_truth: '\\frac{1}{2}', output: 'thus \\boxed{0.5}' }),
        JSON.stringify({ dataset: 'm', answer: '3', extracted: '3.0' }),
        'garbage',
        JSON.stringify({ dataset: 'n', answer: '7', output: 'no box at all' }),
      ].join('\n'),
    );
    const empty = join(dir, 'empty-results.jsonl');
    await writeFile(empty, '');
    const [r, e] = await Promise.all([spark(['score', file]), spark(['score', empty])]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /skipped 1 malformed line/);
    assert.match(r.stdout, /m\s+2\s+2\s+100\.0%\s+0/);
    assert.match(r.stdout, /n\s+1\s+0\s+0\.0%\s+1/);
    assert.match(r.stdout, /mean \(unweighted\)\s+3\s+2\s+50\.0%\s+1/);
    assert.equal(e.code, 1);
    assert.match(e.stderr, /the results file is empty/);
  });

  it("score reads the reference's evaluation files (JSON array or JSONL), ignores is_correct, names the fields", async () => {
    const ref = (gt: string, out: string, isCorrect: boolean, dataset = 'mathvista') => ({
      dataset,
      problem: 'p',
      image_path: 'img/1.png',
      ground_truth: gt,
      vlm_output: out,
      extracted_answer: 'ignored',
      is_correct: isCorrect,
    });
    const records = [
      ref('\\frac{1}{2}', 'so \\boxed{0.5}', false), // stored verdict wrong: Spark's verifier says correct
      ref('3', 'the answer is \\boxed{4}', true), // stored verdict wrong the other way
      ref('7', '\\boxed{7}', true, 'mathverse'),
    ];
    const array = join(dir, 'ref.json');
    const lines = join(dir, 'ref.jsonl');
    const bad = join(dir, 'bad.json');
    const none = join(dir, 'none.json');
    const empty = join(dir, 'empty.json');
    await writeFile(array, JSON.stringify(records, null, 2));
    await writeFile(lines, records.map((r) => JSON.stringify(r)).join('\n'));
    await writeFile(bad, '[{"ground_truth": "1", ');
    await writeFile(none, JSON.stringify([{ problem: 'no gold' }, 5]));
    await writeFile(empty, ' [ ] ');
    const [a, l, b, n, e] = await Promise.all([
      spark(['score', array, '--json']),
      spark(['score', lines]),
      spark(['score', bad]),
      spark(['score', none]),
      spark(['score', empty]),
    ]);
    assert.equal(a.code, 0, a.stderr);
    const summary = JSON.parse(a.stdout) as {
      format: string;
      fields: Record<string, Record<string, number>>;
      storedVerdicts: { records: number; disagree: number };
      answers: AccuracySummary;
    };
    assert.equal(summary.format, 'json-array');
    assert.deepEqual(summary.fields, { gold: { ground_truth: 3 }, output: { vlm_output: 3 }, extracted: {} });
    assert.deepEqual(summary.storedVerdicts, { records: 3, disagree: 2 });
    assert.equal(summary.answers.correct, 2);
    assert.deepEqual(
      summary.answers.datasets.map((d) => [d.dataset, d.correct, d.count]),
      [
        ['mathverse', 1, 1],
        ['mathvista', 1, 2],
      ],
    );
    assert.equal(l.code, 0, l.stderr);
    assert.match(l.stdout, /mathvista\s+2\s+1\s+50\.0%/);
    assert.match(l.stdout, /read as jsonl; ground truth from ground_truth \(3\)/);
    assert.match(l.stdout, /re-extracted \(last \\boxed\{\}\) from vlm_output \(3\)/);
    assert.match(l.stdout, /stored verdicts \(is_correct\) ignored: .* disagrees on 2 of 3/);
    assert.equal(b.code, 1);
    assert.match(b.stderr, /bad\.json: starts with '\[' but is not a valid JSON array/);
    assert.equal(n.code, 1);
    assert.match(n.stderr, /skipped 2 malformed record/);
    assert.match(n.stderr, /none\.json:record 1: no ground truth/);
    assert.match(n.stderr, /no usable record in/);
    assert.equal(e.code, 1);
    assert.match(e.stderr, /empty JSON array/);
  });

  it('infer prints one answer, and the reflection trace with --reflect', async () => {
    const [r, t, empty] = await Promise.all([
      spark(['infer', ckpt, '5+3=?', '--answer', '8', '--max-new-tokens', '48']),
      spark(['infer', ckpt, '5+3=?', '--reflect', '--json', '--max-new-tokens', '48']),
      spark(['infer', ckpt, '   ']),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /=== answer: .*\[(correct|wrong)\]/);
    assert.equal(t.code, 0, t.stderr);
    const res = JSON.parse(t.stdout) as EvaluatedProblem;
    const trace = res.reflection?.trace ?? [];
    assert.equal(trace[0]?.kind, 'answer');
    assert.ok(trace.length >= 1 && trace.length <= 5);
    assert.equal(res.reflection?.calls, trace.length);
    if (res.reflection?.stop === 'yes') assert.equal(trace.at(-1)?.extracted, 'Yes');
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /the question is empty/);
  });
});
