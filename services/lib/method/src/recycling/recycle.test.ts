// Tests of SPARK's recycling rules: cases, labels, only-extracted-answers, statistical shares of the random
// choices (bounds of about 5 standard deviations, so a wrong rule fails), determinism and the step cap.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '@spark/runtime/errors';
import { Rng } from '../tasks/random.js';
import { pairwisePrompt, pointwisePrompt, TEMPLATES, type Template } from '../templates/index.js';
import {
  recycleGroup,
  recycleStep,
  type JudgeItem,
  type RecycleGroup,
  type RecycleResponse,
} from './index.js';

const GOLD = '42';
const ok = (i: number): RecycleResponse => ({
  text: `REASONING-ok-${i} so \\boxed{42}`,
  answer: GOLD,
  reward: 1,
});
const bad = (i: number, boxed = true): RecycleResponse => ({
  text: `REASONING-bad-${i}${boxed ? ` \\boxed{W${i}}` : ''}`,
  answer: boxed ? `W${i}` : null,
  reward: 0,
});
const group = (responses: RecycleResponse[], id = 'g'): RecycleGroup => ({
  id,
  question: 'Q-TEXT',
  gold: GOLD,
  responses,
});
const mixed = (): RecycleGroup => group([ok(0), bad(1), ok(2), bad(3), bad(4, false), ok(5), bad(6), ok(7)]);

function templateOf(id: string): Template {
  for (const kind of Object.values(TEMPLATES)) {
    for (const t of [...kind.full, ...kind.short]) if (t.id === id) return t;
  }
  throw new Error(`no template ${id}`);
}

/** Re-derives the judged answer(s) of an item from its template and checks label consistency. */
function checkJudge(item: JudgeItem, g: RecycleGroup): void {
  const t = templateOf(item.templateId);
  const correct = g.responses
    .filter((r) => r.reward === 1 && r.answer !== null)
    .map((r) => r.answer as string);
  const wrong = g.responses.filter((r) => r.reward === 0 && r.answer !== null).map((r) => r.answer as string);
  assert.ok(!item.prompt.includes('REASONING'), 'judge prompts show only extracted answers');
  if (item.style === 'pairwise') {
    const [a, b] = item.label === 'A' ? [correct, wrong] : [wrong, correct];
    const found = a.some((x) => b.some((y) => pairwisePrompt(t, g.question, x, y) === item.prompt));
    assert.ok(found, `pairwise prompt does not put the correct answer in slot ${item.label}`);
    assert.equal(item.target, item.label === 'A' ? 'slot-A' : 'slot-B');
  } else {
    const isCorrect = item.target === 'correct';
    const pool = isCorrect ? correct : wrong;
    assert.ok(
      pool.some((x) => pointwisePrompt(t, g.question, x) === item.prompt),
      'judged answer not from pool',
    );
    const expected = item.style === 'pointwise-yesno' ? (isCorrect ? 'Yes' : 'No') : isCorrect ? 'A' : 'B';
    assert.equal(item.label, expected);
    assert.ok(t.id.startsWith(item.style));
  }
}

/** |observed - p| < 5 sd of a binomial share. */
function assertShare(count: number, n: number, p: number, what: string): void {
  const sd = Math.sqrt((p * (1 - p)) / n);
  assert.ok(
    Math.abs(count / n - p) < 5 * sd,
    `${what}: ${count}/${n} = ${(count / n).toFixed(3)}, expected ${p}`,
  );
}

void describe('recycling: judge items', () => {
  void it('all correct → pointwise "correct" on an extracted answer', () => {
    const rng = new Rng(1);
    const g = group([ok(0), ok(1), { text: 'no box', answer: null, reward: 1 }]);
    for (let i = 0; i < 200; i++) {
      const { judge, reflection } = recycleGroup(g, rng);
      assert.ok(judge);
      assert.equal(judge.groupCase, 'all-correct');
      assert.equal(judge.target, 'correct');
      assert.ok(judge.label === 'Yes' || judge.label === 'A');
      checkJudge(judge, g);
      assert.equal(reflection, null, 'no reflection without a wrong response');
    }
    const none = recycleGroup(group([{ text: 'x', answer: null, reward: 1 }]), rng);
    assert.equal(none.judge, null);
  });

  void it('all wrong → pointwise "incorrect" on a boxed wrong answer, skipped when none has one', () => {
    const rng = new Rng(2);
    const g = group([bad(1, false), bad(2), bad(3, false), bad(4)]);
    const seen = new Set<string>();
    for (let i = 0; i < 300; i++) {
      const { judge } = recycleGroup(g, rng);
      assert.ok(judge);
      assert.equal(judge.groupCase, 'all-wrong');
      assert.ok(judge.label === 'No' || judge.label === 'B');
      checkJudge(judge, g);
      seen.add(judge.prompt.includes('W2') ? 'W2' : 'W4');
    }
    assert.equal(seen.size, 2, 'both boxed wrong answers get drawn');
    assert.equal(recycleGroup(group([bad(1, false), bad(2, false)]), rng).judge, null);
  });

  void it('mixed → 30% pointwise (50/50 target), 70% pairwise (correct in A with p = 0.5)', () => {
    const rng = new Rng('mixed');
    const n = 6000;
    let pointwise = 0;
    let targetCorrect = 0;
    let slotA = 0;
    let yesno = 0;
    const templateIds = new Set<string>();
    const g = mixed();
    for (let i = 0; i < n; i++) {
      const { judge } = recycleGroup(g, rng);
      assert.ok(judge);
      assert.equal(judge.groupCase, 'mixed');
      checkJudge(judge, g);
      templateIds.add(judge.templateId);
      if (judge.style === 'pairwise') {
        if (judge.label === 'A') slotA++;
      } else {
        pointwise++;
        if (judge.target === 'correct') targetCorrect++;
        if (judge.style === 'pointwise-yesno') yesno++;
      }
    }
    assertShare(pointwise, n, 0.3, 'pointwise share');
    assertShare(targetCorrect, pointwise, 0.5, 'pointwise correct target');
    assertShare(yesno, pointwise, 0.5, 'yes/no label style');
    assertShare(slotA, n - pointwise, 0.5, 'correct answer in slot A');
    const all = [
      ...TEMPLATES['pointwise-yesno'].full,
      ...TEMPLATES['pointwise-ab'].full,
      ...TEMPLATES.pairwise.full,
    ];
    for (const t of all) assert.ok(templateIds.has(t.id), `template ${t.id} never drawn`);
  });

  void it('mixed with only one side extracted falls back to pointwise on that side', () => {
    const rng = new Rng(3);
    const g = group([ok(0), bad(1, false), bad(2, false)]);
    for (let i = 0; i < 100; i++) {
      const { judge } = recycleGroup(g, rng);
      assert.ok(judge);
      assert.equal(judge.target, 'correct');
      checkJudge(judge, g);
    }
  });

  void it('uses the short templates when asked', () => {
    const { judge, reflection } = recycleGroup(mixed(), new Rng(4), { variant: 'short' });
    assert.match(judge?.templateId ?? '', /\/short\//);
    assert.match(reflection?.templateId ?? '', /\/short\//);
  });
});

void describe('recycling: reflection items', () => {
  void it('labels with the gold answer; CoT ≈ 1/2, "it is wrong" ≈ 1/3; shows only wrong responses', () => {
    const rng = new Rng('refl');
    const g = mixed();
    const n = 6000;
    let cot = 0;
    let wrongTone = 0;
    for (let i = 0; i < n; i++) {
      const { reflection: r } = recycleGroup(g, rng);
      assert.ok(r);
      assert.equal(r.label, GOLD);
      assert.ok(r.templateId.startsWith(`reflection-${r.tone}-${r.mode}/`));
      assert.ok(
        !r.prompt.includes('REASONING-ok') && !r.prompt.includes('\\boxed{42}'),
        'a correct response leaked',
      );
      if (r.mode === 'cot') {
        cot++;
        assert.match(r.prompt, /REASONING-bad-\d/);
      } else {
        assert.ok(!r.prompt.includes('REASONING'), 'answer mode shows only the extracted answer');
        assert.match(r.prompt, /W[1-6]/);
      }
      if (r.tone === 'wrong') wrongTone++;
    }
    assertShare(cot, n, 0.5, 'CoT mode');
    assertShare(wrongTone, n, 1 / 3, '"it is wrong" tone');
  });

  void it('keeps CoT texts within maxCotChars, falling back to answer mode or to no item', () => {
    const rng = new Rng(8);
    const long = { text: 'x'.repeat(500) + ' \\boxed{W9}', answer: 'W9', reward: 0 as const };
    for (let i = 0; i < 100; i++) {
      const { reflection } = recycleGroup(group([ok(0), long, bad(1)]), rng, { maxCotChars: 100 });
      assert.ok(reflection);
      assert.ok(!reflection.prompt.includes('xxxxx'), 'a text over the limit was shown');
      const { reflection: only } = recycleGroup(group([ok(0), long]), rng, { maxCotChars: 100 });
      assert.equal(only?.mode, 'answer');
    }
    const hopeless = { text: 'y'.repeat(500), answer: null, reward: 0 as const };
    assert.equal(recycleGroup(group([hopeless]), rng, { maxCotChars: 100 }).reflection, null);
  });

  void it('falls back to CoT mode when no wrong response has an extracted answer', () => {
    const rng = new Rng(6);
    for (let i = 0; i < 50; i++) {
      const { reflection } = recycleGroup(group([ok(0), bad(1, false)]), rng);
      assert.equal(reflection?.mode, 'cot');
    }
  });
});

void describe('recycling: determinism, step cap, validation', () => {
  const groups: RecycleGroup[] = Array.from({ length: 64 }, (_, i) =>
    group(
      i % 4 === 0 ? [ok(0), ok(1)] : i % 4 === 1 ? [bad(0), bad(1, false)] : [ok(0), bad(1), bad(2)],
      `g${i}`,
    ),
  );

  void it('is deterministic by seed', () => {
    assert.deepEqual(recycleStep(groups, new Rng(11)), recycleStep(groups, new Rng(11)));
    assert.notDeepEqual(recycleStep(groups, new Rng(11)).judge, recycleStep(groups, new Rng(12)).judge);
  });

  void it('keeps a random B/2 judge items in group order when there are more', () => {
    const step = recycleStep(groups, new Rng(13));
    assert.equal(step.judgeCandidates, 64);
    assert.equal(step.judge.length, 32);
    const order = step.judge.map((j) => Number(j.sourceId?.slice(1)));
    assert.deepEqual(
      [...order].sort((a, b) => a - b),
      order,
    );
    // 48 groups hold a wrong response; a random B/2 = 32 of their reflection items are kept
    assert.equal(step.reflectionCandidates, 48);
    assert.equal(step.reflection.length, 32);
    for (const r of step.reflection) assert.notEqual(Number(r.sourceId?.slice(1)) % 4, 0);
    const reflectionOrder = step.reflection.map((r) => Number(r.sourceId?.slice(1)));
    assert.deepEqual(
      [...reflectionOrder].sort((a, b) => a - b),
      reflectionOrder,
    );
    assert.notDeepEqual(
      recycleStep(groups, new Rng(14)).reflection.map((r) => r.sourceId),
      step.reflection.map((r) => r.sourceId),
      'a random subset of the reflections, not the first 32',
    );
    // the kept half differs between seeds (a random subset, not the first 32)
    const other = recycleStep(groups, new Rng(14)).judge.map((j) => j.sourceId);
    assert.notDeepEqual(
      other,
      step.judge.map((j) => j.sourceId),
    );
    const capped = recycleStep(groups, new Rng(13), { maxJudge: 5, maxReflection: 3 });
    assert.equal(capped.judge.length, 5);
    assert.equal(capped.reflection.length, 3);
    const small = recycleStep(groups.slice(0, 4), new Rng(1), { maxJudge: 10 });
    assert.equal(small.judge.length, 4);
  });

  void it('balanceLabels evens the pointwise targets of a skewed step and keeps every pairwise item', () => {
    // a weak policy: most groups all wrong ("incorrect" items), few all correct, some mixed
    const skewed = Array.from({ length: 64 }, (_, i) =>
      group(i < 40 ? [bad(0), bad(1)] : i < 48 ? [ok(0), ok(1)] : [ok(0), bad(1)], `s${i}`),
    );
    const count = (items: readonly { style: string; target: string }[], target: string) =>
      items.filter((j) => j.style !== 'pairwise' && j.target === target).length;
    const plain = recycleStep(skewed, new Rng(5), { maxJudge: 64 });
    assert.ok(count(plain.judge, 'incorrect') >= 40, 'the method alone: the "incorrect" target dominates');
    assert.ok(count(plain.judge, 'correct') <= 24);
    const even = recycleStep(skewed, new Rng(5), { maxJudge: 64, balanceLabels: true });
    const right = count(even.judge, 'correct');
    assert.ok(right >= 8);
    assert.equal(count(even.judge, 'incorrect'), right);
    const pairs = (xs: readonly { style: string }[]) => xs.filter((j) => j.style === 'pairwise').length;
    assert.equal(pairs(even.judge), pairs(plain.judge), 'pairwise items are all kept');
    assert.deepEqual(even.reflection, plain.reflection, 'reflection is untouched');
    // and the B/2 cap still applies afterwards
    assert.ok(recycleStep(skewed, new Rng(5), { balanceLabels: true }).judge.length <= 32);
  });

  void it('rejects malformed groups and options', () => {
    const rng = new Rng(1);
    assert.throws(
      () =>
        recycleGroup(
          { question: '', gold: '', responses: [{ text: 'x', answer: null, reward: 2 as 0 }] },
          rng,
        ),
      (e: unknown) => e instanceof InvalidArgumentError && e.problems.length === 3,
    );
    assert.throws(() => recycleGroup(mixed(), rng, { pPointwiseMixed: 1.5 }), InvalidArgumentError);
    assert.deepEqual(recycleGroup(mixed(), rng, { judge: false, reflection: false }), {
      judge: null,
      reflection: null,
    });
  });
});
