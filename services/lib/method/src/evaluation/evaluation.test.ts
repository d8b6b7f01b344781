// Tests of the evaluation library (@spark/method/evaluation) with the real verifier: summary semantics on
// hand-made results, the self-reflection control flow driven by a deterministic model-call function
// (the tiny model cannot produce the verdicts these cases need), the checkpoint-independent judge items,
// results-file parsing, and checkpoint loading (a learner checkpoint root, over-long prompts).
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import {
  buildJudgeItems,
  buildReflectionItems,
  evaluateJudge,
  evaluateProblems,
  formatAccuracyTable,
  initialResults,
  readResults,
  reflectionStats,
  ResultsFileError,
  summarize,
  summarizeJudge,
  wrongAnswerFor,
  type GenerateFn,
} from './index.js';
import { selfJudgePrompt, resolvePrompt, problemPrompt } from '../templates/index.js';
import { Model } from '@spark/kernels';
import { Verifier } from '@spark/verify';

import { CheckpointLoadError, loadGenerator, resolveCheckpoint } from '../checkpoint/index.js';

// one verifier (its symbolic workers take a moment to start) for the whole file
let verifier: Verifier;
before(async () => {
  verifier = new Verifier({ budgetMs: 200 });
  await verifier.ready();
});
after(async () => verifier.close());

describe('summary semantics (calculate-acc)', () => {
  it('averages per-dataset accuracies without weighting and counts missing answers as wrong', () => {
    const rows = [
      // big: 1/4 correct, one missing
      { dataset: 'big', extracted: '1', correct: true },
      { dataset: 'big', extracted: '2', correct: false },
      { dataset: 'big', extracted: null, correct: false },
      { dataset: 'big', extracted: '3', correct: false },
      // small: 1/1 correct
      { dataset: 'small', extracted: '7', correct: true },
      // empty-box answer counts as missing
      { dataset: 'tiny', extracted: '  ', correct: false },
    ];
    const s = summarize(rows);
    assert.deepEqual(
      s.datasets.map((d) => [d.dataset, d.count, d.correct, d.accuracy, d.missing]),
      [
        ['big', 4, 1, 0.25, 1],
        ['small', 1, 1, 1, 0],
        ['tiny', 1, 0, 0, 1],
      ],
    );
    assert.equal(s.mean, (0.25 + 1 + 0) / 3); // unweighted over datasets
    assert.equal(s.overall, 2 / 6); // micro, reported beside it
    assert.equal(s.missing, 2);
    assert.equal(s.count, 6);
    const table = formatAccuracyTable(s);
    assert.match(table, /mean \(unweighted\)\s+6\s+2\s+41\.7%\s+2/);
    assert.match(table, /big\s+4\s+1\s+25\.0%\s+1/);
  });

  it('is empty-safe', () => {
    const s = summarize([]);
    assert.equal(s.mean, 0);
    assert.equal(s.datasets.length, 0);
  });
});

/** A deterministic "model": answers by looking the prompt up in a table of rules, counting calls. */
function scripted(rules: (prompt: string) => string): { generate: GenerateFn; calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    generate: (prompts) => {
      calls.push(...prompts);
      return Promise.resolve(prompts.map(rules));
    },
  };
}

describe('test-time self-reflection control flow', () => {
  const q = (id: string, question: string, answer: string) => ({ id, dataset: 'd', question, answer });

  it('stops on exactly "Yes", re-solves on anything else, at most 2 rounds and 5 calls', async () => {
    const problems = [
      q('yes', 'Q1', '4'), // answered right, judged Yes at once: 2 calls
      q('no', 'Q2', '6'), // judged No forever: answer, (judge, resolve) x2 = 5 calls
      q('lower', 'Q3', '8'), // "yes" (lower case) is not "Yes": re-solved
      q('fix', 'Q4', '10'), // wrong, judged No, re-solved right, judged Yes: 4 calls
      q('break', 'Q5', '12'), // right, judged "No", re-solved wrong, judged Yes: broken
      q('none', 'Q6', '14'), // no boxed answer: re-solved without a judge call
    ];
    const firstAnswer: Record<string, string> = {
      Q1: 'so \\boxed{4}',
      Q2: '\\boxed{5}',
      Q3: '\\boxed{8}',
      Q4: '\\boxed{9}',
      Q5: '\\boxed{12}',
      Q6: 'I do not know',
    };
    const verdict: Record<string, (answer: string) => string> = {
      Q1: () => 'ok \\boxed{Yes}',
      Q2: () => '\\boxed{No}',
      Q3: () => '\\boxed{yes}',
      Q4: (a) => (a === '10' ? '\\boxed{ Yes }' : '\\boxed{No}'),
      Q5: (a) => (a === '12' ? '\\boxed{No}' : '\\boxed{Yes}'),
      Q6: () => '\\boxed{Yes}',
    };
    const resolved: Record<string, string> = {
      Q1: '\\boxed{4}',
      Q2: '\\boxed{5}',
      Q3: '\\boxed{8}',
      Q4: '\\boxed{10}',
      Q5: '\\boxed{13}',
      Q6: '\\boxed{14}',
    };
    const prompts = new Map<string, string>();
    for (const p of problems) {
      prompts.set(problemPrompt(p.question, 'short'), firstAnswer[p.question] as string);
      for (const a of ['4', '5', '8', '9', '10', '12', '13', '14', '(none)', 'nothing'])
        prompts.set(resolvePrompt(p.question, a, 'short'), resolved[p.question] as string);
      for (const a of ['4', '5', '8', '9', '10', '12', '13', '14'])
        prompts.set(
          selfJudgePrompt(p.question, a, 'short'),
          (verdict[p.question] as (a: string) => string)(a),
        );
    }
    const model = scripted((p) => {
      const out = prompts.get(p);
      if (out === undefined) throw new Error(`unexpected prompt ${JSON.stringify(p)}`);
      return out;
    });
    const results = await evaluateProblems(problems, {
      generate: model.generate,
      scorer: verifier,
      reflect: true,
      batchSize: 4, // two batches
    });
    const by = new Map(results.map((r) => [r.id, r]));
    const calls = (id: string) => by.get(id)?.reflection?.calls;
    assert.equal(calls('yes'), 2);
    assert.equal(by.get('yes')?.reflection?.stop, 'yes');
    assert.equal(calls('no'), 5);
    assert.equal(by.get('no')?.reflection?.rounds, 2);
    assert.equal(by.get('no')?.reflection?.stop, 'max-rounds');
    assert.equal(calls('lower'), 5);
    assert.equal(calls('fix'), 4);
    assert.equal(by.get('fix')?.correct, true);
    assert.equal(by.get('fix')?.reflection?.initial.correct, false);
    assert.equal(by.get('break')?.correct, false);
    assert.equal(by.get('break')?.reflection?.initial.correct, true);
    // no answer: re-solve without judging, then the new answer is judged Yes
    assert.deepEqual(
      by.get('none')?.reflection?.trace.map((t) => t.kind),
      ['answer', 'resolve', 'judge'],
    );
    assert.equal(by.get('none')?.correct, true);
    for (const r of results) assert.ok((r.reflection?.calls ?? 99) <= 5);
    assert.equal(
      model.calls.length,
      results.reduce((s, r) => s + (r.reflection?.calls ?? 0), 0),
    );

    const st = reflectionStats(results);
    assert.equal(st.fixed, 2); // fix, none
    assert.equal(st.broken, 1);
    assert.equal(st.maxCallsPerItem, 5);
    assert.equal(st.accuracyBefore, 3 / 6); // Q1, Q3, Q5 right at first
    assert.equal(st.accuracyAfter, 4 / 6); // Q1, Q3, Q4, Q6
    // verdicts: yes:Y(right) | no: N,N on a wrong answer (right, right) | lower: "yes","yes" on a right
    // answer (wrong, wrong) | fix: N on 9 (right), Yes on 10 (right) | break: N on 12 (wrong), Yes on 13
    // (wrong) | none: Yes on 14 (right)
    assert.equal(st.verdicts, 10);
    assert.equal(st.verdictAccuracy, 6 / 10);
    assert.deepEqual(st.verdictCounts, { yes: 4, no: 4, other: 2, none: 0 });
    // the without-reflection view keeps the first answers
    assert.equal(summarize(initialResults(results)).overall, 0.5);
  });

  it('does nothing extra without --reflect: one call per problem', async () => {
    const model = scripted(() => '\\boxed{1}');
    const rs = await evaluateProblems([q('a', 'A', '1'), q('b', 'B', '2')], {
      generate: model.generate,
      scorer: verifier,
    });
    assert.equal(model.calls.length, 2);
    assert.deepEqual(
      rs.map((r) => [r.correct, r.extracted, r.reflection]),
      [
        [true, '1', undefined],
        [false, '1', undefined],
      ],
    );
  });

  it('rejects a generator that returns the wrong number of outputs', async () => {
    await assert.rejects(
      evaluateProblems([q('a', 'A', '1')], { generate: () => Promise.resolve([]), scorer: verifier }),
      /0 outputs for 1 prompts/,
    );
  });
});

describe('reward benchmark items', () => {
  const problems = Array.from({ length: 10 }, (_, i) => ({
    id: `p${i}`,
    question: `${i}+${i}=?`,
    answer: String(2 * i),
  }));

  it('wrong answers are deterministic and never equivalent to the gold', async () => {
    for (const gold of ['0', '-7', '42', '3.25', '5/8', 'x^2', '123456789']) {
      const w = wrongAnswerFor(gold);
      assert.equal(w, wrongAnswerFor(gold));
      assert.equal((await verifier.verifyAnswer(w, gold)).reward, 0, `${gold} vs ${w}`);
    }
  });

  it('builds balanced pointwise (yes/no, a/b) and pairwise items, the same for every call', () => {
    const items = buildJudgeItems(problems, { seed: 3 });
    assert.deepEqual(items, buildJudgeItems(problems, { seed: 3 }));
    assert.equal(items.length, 30);
    const labels = (style: string) => items.filter((i) => i.tags[0] === style).map((i) => i.label);
    const count = (xs: string[], x: string) => xs.filter((y) => y === x).length;
    assert.equal(count(labels('pointwise-yesno'), 'Yes'), 5);
    assert.equal(count(labels('pointwise-yesno'), 'No'), 5);
    assert.equal(count(labels('pointwise-ab'), 'A'), 5);
    assert.equal(count(labels('pairwise'), 'A'), 5);
    const yes = items.find((i) => i.promptId === 'j-pointwise-yesno-p2');
    assert.equal(yes?.label, 'Yes');
    assert.match(yes?.text ?? '', /2\+2=\?/);
    assert.match(yes?.text ?? '', /\b4\b/);
    const no = items.find((i) => i.promptId === 'j-pointwise-yesno-p3');
    assert.equal(no?.label, 'No');
    assert.ok(no?.text.includes(wrongAnswerFor('6')));
    const refl = buildReflectionItems(problems);
    assert.equal(refl.length, 10);
    assert.equal(refl[1]?.label, '2');
    assert.ok(refl[1]?.text.includes(wrongAnswerFor('2')));
  });

  it('scores verdicts with the judge rule and summarises per style and as a mean', async () => {
    const items = buildJudgeItems(problems.slice(0, 4));
    {
      // a judge that always says A: right on a/b when correct, on pairwise when the gold is in A
      const rs = await evaluateJudge(items, {
        generate: (ps) => Promise.resolve(ps.map(() => 'hmm \\boxed{A} \\boxed{B}')),
        scorer: verifier,
        batchSize: 5,
      });
      const s = summarizeJudge(rs);
      assert.equal(s.styles['pointwise-yesno']?.accuracy, 0);
      assert.equal(s.styles['pointwise-ab']?.accuracy, 0.5);
      assert.equal(s.pairwise.accuracy, 0.5);
      assert.equal(s.pointwise.accuracy, 0.25);
      assert.equal(s.mean, (0.25 + 0.5) / 2);
    }
  });
});

describe('results files', () => {
  it('parses records from several producers and reports malformed lines', async () => {
    const text = [
      JSON.stringify({ dataset: 'a', answer: '1', output: '\\boxed{1}' }),
      '{not json',
      JSON.stringify({ ground_truth: 2, extracted: '2' }),
      JSON.stringify({ dataset: 'a', output: 'x' }),
      '',
      JSON.stringify({ dataset: 'b', gt: '3', prediction: 'no box' }),
      JSON.stringify([1, 2]),
    ].join('\n');
    const r = await readResults([text], 'mem');
    assert.equal(r.records.length, 3);
    assert.deepEqual(
      r.errors.map((e) => e.line),
      [2, 4, 7],
    );
    assert.match(r.errors[1]?.message ?? '', /no ground truth/);
    assert.equal(r.records[1]?.dataset, 'default');
    assert.equal(r.records[1]?.answer, '2');
    assert.equal(r.records[1]?.output, null);
    assert.equal(r.records[2]?.output, 'no box');
  });

  it('rejects an empty file with a named error', async () => {
    await assert.rejects(readResults(['\n  \n'], 'empty.jsonl'), (e: unknown) => {
      assert.ok(e instanceof ResultsFileError);
      assert.match(e.message, /empty\.jsonl: the results file is empty/);
      return true;
    });
  });
});

describe('checkpoint loading', () => {
  it('loads a checkpoint directory or a learner checkpoint root (latest.json), rejects others clearly', async () => {
    const root = await mkdtemp(join(tmpdir(), 'spark-eval-ckpt-'));
    try {
      const model = await Model.create('tiny', 5);
      await model.save(join(root, 'step-3'));
      model.free();
      await writeFile(join(root, 'latest.json'), JSON.stringify({ dir: 'step-3', step: 3 }));
      assert.equal(await resolveCheckpoint(root), join(root, 'step-3'));
      assert.equal(await resolveCheckpoint(join(root, 'step-3')), join(root, 'step-3'));
      const gen = await loadGenerator(root, { maxNewTokens: 4, batch: 2 });
      try {
        const long = 'x'.repeat(400); // over the tiny model's 256-token context
        const outs = await gen.generate(['1+1=?', long, '2+2=?']);
        assert.equal(outs.length, 3);
        assert.equal(outs[1], '');
        assert.deepEqual(
          { ...gen.stats, outputTokens: 0 },
          { calls: 1, prompts: 3, tooLong: 1, outputTokens: 0 },
        );
      } finally {
        gen.close();
      }
      await writeFile(join(root, 'latest.json'), JSON.stringify({ dir: '../etc' }));
      await assert.rejects(resolveCheckpoint(root), CheckpointLoadError);
      await assert.rejects(resolveCheckpoint(join(root, 'nothing')), /no config\.json and no latest\.json/);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
