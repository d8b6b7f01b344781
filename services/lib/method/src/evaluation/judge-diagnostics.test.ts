// Tests of the judge diagnostics: the AUC on known inputs, the option-order templates, the benchmark sets,
// verdict statuses, the summary driven by deterministic judges, and — with a real tiny checkpoint and the
// real native kernels — the teacher-forced verdict scores, seeded sampling and the model's own mistakes.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Verifier } from '@spark/verify';

import { loadGenerator, makeTinyCheckpoint, type LoadedGenerator } from '../checkpoint/index.js';
import {
  NO_FIRST_TEMPLATES,
  optionOrderOf,
  placeholdersOf,
  TEMPLATES,
  type Template,
} from '../templates/index.js';
import { renderPromptTokens } from '../tokenizers/index.js';
import {
  buildJudgeBenchmark,
  buildJudgeItems,
  collectOwnMistakes,
  diagnoseJudge,
  evaluateJudge,
  farAnswerFor,
  formatJudgeDiagnostics,
  rocAuc,
  scoreJudgeMargins,
  tagValue,
  verdictPrefix,
  verdictStatus,
  wrongAnswerFor,
  type GenerateFn,
} from './index.js';

let verifier: Verifier;
before(async () => {
  verifier = new Verifier({ budgetMs: 200 });
  await verifier.ready();
});
after(async () => verifier.close());

const problems = Array.from({ length: 8 }, (_, i) => ({
  id: `p${i}`,
  question: `${i + 10}+${i}=?`,
  answer: String(2 * i + 10),
  family: i < 4 ? 'add' : 'other',
}));

describe('rocAuc', () => {
  it('is the probability that a positive outscores a negative, ties counting half', () => {
    assert.equal(rocAuc([3, 4], [1, 2]), 1);
    assert.equal(rocAuc([1, 2], [3, 4]), 0);
    assert.equal(rocAuc([1, 1], [1, 1]), 0.5);
    // 0.9 and 0.8 beat all three negatives; 0.4 beats 0.1 and ties 0.4: (3 + 3 + 1.5) / 9
    assert.equal(rocAuc([0.9, 0.8, 0.4], [0.7, 0.4, 0.1]), 7.5 / 9);
    assert.equal(rocAuc([-Infinity, 5], [0]), 0.5);
    assert.equal(rocAuc([1, Number.NaN], [0]), 1);
    assert.equal(rocAuc([], [1]), null);
    assert.equal(rocAuc([1], []), null);
  });
});

describe('option-order templates', () => {
  it('list every recycling pointwise option Yes/A first, and each counterpart No/B first', () => {
    for (const kind of ['pointwise-yesno', 'pointwise-ab'] as const) {
      for (const variant of ['full', 'short'] as const) {
        const originals = TEMPLATES[kind][variant];
        const swapped = NO_FIRST_TEMPLATES[kind][variant];
        assert.equal(swapped.length, originals.length);
        originals.forEach((t, i) => {
          const s = swapped[i] as Template;
          assert.equal(optionOrderOf(t.text), 'yes-first', t.id);
          assert.equal(optionOrderOf(s.text), 'no-first', s.id);
          assert.equal(s.id, `${t.id}/no-first`);
          assert.deepEqual(placeholdersOf(s.text), placeholdersOf(t.text));
          assert.ok(s.text.includes('\\boxed{'), s.id);
          if (variant === 'short') assert.ok(s.text.length <= 90, s.id);
        });
      }
    }
  });
});

describe('benchmark items', () => {
  it('keeps the standard items and adds option-order, far-off and own-mistake sets', async () => {
    const own = [{ problemId: 'p1', answer: '99' }];
    const items = buildJudgeBenchmark(problems, { seed: 2, own });
    const standard = buildJudgeItems(problems, { seed: 2 });
    assert.deepEqual(items.slice(0, standard.length), standard);
    const set = (s: string) => items.filter((i) => tagValue(i.tags, 'set') === s);
    assert.equal(set('standard').length, 24);
    assert.equal(set('no-first').length, 16);
    assert.equal(set('far').length, 24);
    assert.equal(set('own').length, 3);
    for (const it of set('no-first')) {
      const twin = standard.find(
        (s) => s.promptId === it.promptId.replace('-no-first', ''),
      ) as (typeof standard)[0];
      assert.equal(it.label, twin.label);
      assert.equal(it.tags[1], twin.tags[1]);
      assert.equal(tagValue(it.tags, 'template'), `${tagValue(twin.tags, 'template') ?? ''}/no-first`);
      assert.equal(optionOrderOf(it.text), 'no-first');
    }
    for (const p of problems) {
      const far = farAnswerFor(p.answer);
      assert.ok(Math.abs(Number(far) - Number(p.answer)) >= 40, far);
      assert.equal((await verifier.verifyAnswer(far, p.answer)).reward, 0);
      assert.notEqual(far, wrongAnswerFor(p.answer));
    }
    for (const it of set('far').filter((i) => i.kind === 'pointwise')) {
      assert.ok(['No', 'B'].includes(it.label));
      assert.equal(tagValue(it.tags, 'wrong'), 'far');
    }
    assert.ok(set('own').every((i) => i.text.includes('99') && tagValue(i.tags, 'family') === 'add'));
    assert.equal(farAnswerFor('1/3'), '11/3');
    assert.equal(farAnswerFor('x^2'), 'x^2 + 100');
    assert.equal(farAnswerFor('2.5'), farAnswerFor('2.5'));
  });

  it('tells verdicts from missing ones and from a box before the verdict', () => {
    assert.equal(verdictStatus('so \\boxed{ Yes }', 'pointwise-yesno'), 'verdict');
    assert.equal(verdictStatus('no box here', 'pointwise-yesno'), 'none');
    assert.equal(verdictStatus('29 \\boxed{29} so \\boxed{No}', 'pointwise-yesno'), 'box-before-verdict');
    assert.equal(verdictStatus('\\boxed{A}', 'pointwise-yesno'), 'invalid');
    assert.equal(verdictStatus('\\boxed{B}', 'pairwise'), 'verdict');
    assert.equal(verdictPrefix('x=3 \\boxed{Yes} \\boxed{No}'), 'x=3 \\boxed{');
    assert.equal(verdictPrefix('x=3'), 'x=3\\boxed{');
  });
});

describe('diagnoseJudge', () => {
  it('exposes a judge that copies the first option it is shown', async () => {
    const items = buildJudgeBenchmark(problems, { seed: 1 });
    // copies the first option the prompt lists (first boxed option, else the first listed letter)
    const copier: GenerateFn = (ps) =>
      Promise.resolve(
        ps.map((p) => {
          const m = /\\boxed\{(Yes|No|A|B)\}|\b(Yes|No)\b|(?:^|[\s(])([AB])(?=[).:=]| if| means)/m.exec(p);
          return `\\boxed{${m?.[1] ?? m?.[2] ?? m?.[3] ?? '?'}}`;
        }),
      );
    const results = await evaluateJudge(items, { generate: copier, scorer: verifier, batchSize: 7 });
    const d = diagnoseJudge(results);
    const order = d.byOrder.pointwise ?? {};
    assert.equal(order['yes-first']?.yesShare, 1);
    assert.equal(order['yes-first']?.accuracy, 0.5);
    assert.equal(order['no-first']?.yesShare, 0);
    assert.equal(order['no-first']?.accuracy, 0.5);
    assert.equal(d.wrongAnswers.far?.pointwise.accuracy, 0); // "Yes"/"A" to every far-off answer
    assert.deepEqual(d.sets, { standard: 24, 'no-first': 16, far: 24 });
    assert.deepEqual(Object.keys(d.byFamily), ['add', 'other']);
    assert.equal(d.verdicts['pointwise-yesno']?.verdict, 8);
    assert.equal(d.auc, null);
    assert.match(formatJudgeDiagnostics(d), /pointwise no-first\s+16\s+50\.0%\s+0\.0%/);
  });

  it('counts missing verdicts and boxes before the verdict, and computes AUCs from margins', async () => {
    const items = buildJudgeItems(problems.slice(0, 4));
    const outputs = ['no box', '\\boxed{14} \\boxed{No}', '\\boxed{Yes}', '\\boxed{A}'];
    const rs = await evaluateJudge(items, {
      generate: (ps) => Promise.resolve(ps.map((_, i) => outputs[i % 4] as string)),
      scorer: verifier,
    });
    const v = diagnoseJudge(rs).verdicts;
    const total = Object.values(v).reduce(
      (a, c) => ({
        none: a.none + c.none,
        before: a.before + c.boxBeforeVerdict,
        ok: a.ok + c.verdict,
        invalid: a.invalid + c.invalid,
      }),
      { none: 0, before: 0, ok: 0, invalid: 0 },
    );
    // items cycle yes/no, a/b, pairwise; outputs cycle the four above: e.g. item 9 (yes/no) gets the
    // boxed 14 before its No, items 1, 2, 3, 5 and 10 get boxes that are no verdict of their style
    assert.deepEqual(total, { none: 3, before: 1, ok: 3, invalid: 5 });
    assert.equal(v['pointwise-yesno']?.boxBeforeVerdict, 1);
    // margins that rank every correct target above every wrong one: AUC 1 per style
    const scored = rs.map((r) => ({
      ...r,
      margin: r.tags?.[1] === 'correct' || r.tags?.[1] === 'slot-A' ? 1 : -1,
    }));
    const d = diagnoseJudge(scored);
    assert.deepEqual(d.auc?.styles, { 'pointwise-yesno': 1, 'pointwise-ab': 1, pairwise: 1 });
    assert.equal(d.auc?.scored, 12);
    assert.equal(d.auc?.wrongAnswers.near?.['pointwise-yesno'], 1);
    assert.equal(d.auc?.wrongAnswers.far?.['pointwise-yesno'], null);
  });
});

describe('with a real tiny checkpoint and the native kernels', () => {
  let dir: string;
  let gen: LoadedGenerator;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'spark-judge-diag-'));
    await makeTinyCheckpoint(dir, 40);
    gen = await loadGenerator(dir, { maxNewTokens: 24, batch: 8 });
  });
  after(async () => {
    gen.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('scores candidates by teacher-forced log-probs and skips what does not fit', async () => {
    const prompt = 'Q: 2+3=?\nGiven: 5\nRight? \\boxed{Yes} or \\boxed{No}.';
    const prefix = '2+3=5. \\boxed{';
    const [s, tooLong] = await gen.score([
      { prompt, prefix, candidates: ['Yes}', 'No}'] },
      { prompt: 'x'.repeat(300), prefix, candidates: ['Yes}', 'No}'] },
    ]);
    assert.equal(tooLong, null);
    const base = [...renderPromptTokens(gen.tokenizer, prompt), ...gen.tokenizer.encode(prefix)];
    const [yes, no] = await gen.model.logprobs(
      ['Yes}', 'No}'].map((c) => ({
        tokens: Uint32Array.from([...base, ...gen.tokenizer.encode(c)]),
        promptLen: base.length,
      })),
    );
    const sum = (a: Float32Array | undefined) => (a ?? new Float32Array()).reduce((x, y) => x + y, 0);
    assert.ok(s);
    assert.ok(Math.abs((s[0] as number) - sum(yes)) < 1e-4);
    assert.ok(Math.abs((s[1] as number) - sum(no)) < 1e-4);
    assert.ok((s[0] as number) < 0 && (s[1] as number) < 0);
    // margins through the benchmark: one per item, the Yes/A log-prob minus the No/B one
    const items = buildJudgeItems(problems.slice(0, 2));
    const rs = await evaluateJudge(items, { generate: gen.generate, scorer: verifier });
    const m = await scoreJudgeMargins(items, rs, gen.score, 3);
    assert.equal(m.length, 6);
    for (const r of m) assert.ok(typeof r.margin === 'number' && Number.isFinite(r.margin));
    const d = diagnoseJudge(m);
    assert.equal(d.auc?.scored, 6);
  });

  it("samples with a seed and collects the model's own mistakes, all verified wrong", async () => {
    const prompts = ['12+5=?\nAnswer in \\boxed{}.', '7+9=?\nAnswer in \\boxed{}.'];
    const a = await gen.generate(prompts, { temperature: 1, seed: 3 });
    assert.deepEqual(await gen.generate(prompts, { temperature: 1, seed: 3 }), a);
    await assert.rejects(gen.generate(prompts, { temperature: -1 }), /temperature/);
    const { mistakes, samples, wrong } = await collectOwnMistakes(problems, {
      sample: (ps, draw) => gen.generate(ps, { temperature: 1, seed: 1 + draw }),
      draws: 3,
      scorer: verifier,
    });
    assert.ok(samples >= problems.length && samples <= 3 * problems.length);
    assert.ok(mistakes.length <= wrong);
    for (const m of mistakes) {
      const p = problems.find((x) => x.id === m.problemId);
      assert.ok(p);
      assert.equal((await verifier.verifyAnswer(m.answer, p.answer)).reward, 0, `${m.answer} vs ${p.answer}`);
    }
    await assert.rejects(
      collectOwnMistakes(problems, { sample: () => Promise.resolve([]), draws: 0, scorer: verifier }),
      /draws/,
    );
  });
});
