// Tests of the embedded default dataset: determinism, disjoint splits, correct answers (checked by an
// independent evaluator written here), arithmetic in every worked-solution step, sizes and charset.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { InvalidArgumentError } from '@spark/runtime/errors';
import {
  DIFFICULTIES,
  FAMILIES,
  generateTasks,
  iterateTasks,
  problemId,
  splitOf,
  taskPrompt,
  warmupExample,
  type TaskProblem,
} from './index.js';

/** Independent evaluator: integers, + - * /, parentheses, unary minus. Division must be exact. */
function evaluate(src: string): number {
  let i = 0;
  const s = src.replace(/\s+/g, '');
  const peek = (): string => s[i] ?? '';
  function primary(): number {
    if (peek() === '(') {
      i++;
      const v = sum();
      assert.equal(peek(), ')', `missing ) in ${src}`);
      i++;
      return v;
    }
    if (peek() === '-') {
      i++;
      return -primary();
    }
    const m = /^\d+/.exec(s.slice(i));
    assert.ok(m, `number expected at ${i} in "${src}"`);
    i += m[0].length;
    return Number(m[0]);
  }
  function product(): number {
    let v = primary();
    while (peek() === '*' || peek() === '/') {
      const o = s[i++];
      const r = primary();
      if (o === '*') v *= r;
      else {
        assert.equal(v % r, 0, `inexact division in ${src}`);
        v /= r;
      }
    }
    return v;
  }
  function sum(): number {
    let v = product();
    while (peek() === '+' || peek() === '-') {
      const o = s[i++];
      const r = product();
      v = o === '+' ? v + r : v - r;
    }
    return v;
  }
  const v = sum();
  assert.equal(i, s.length, `trailing input in "${src}"`);
  return v;
}

/** The gold answer recomputed from the question text alone. */
function solveQuestion(p: TaskProblem): number {
  const q = p.question;
  let m: RegExpExecArray | null;
  if ((m = /^Larger: (.*) or (.*)\?$/.exec(q)))
    return Math.max(evaluate(m[1] as string), evaluate(m[2] as string));
  if ((m = /^(\d+) mod (\d+)=\?$/.exec(q))) return Number(m[1]) % Number(m[2]);
  if ((m = /^(\d*)x([+-]\d+)=(?:(\d*)x)?(-?\d+)?([+-]\d+)?, x=\?$/.exec(q))) {
    // a x + b = c x + d  (c absent: 0); also handles "x-5=-3"
    const a = m[1] === '' ? 1 : Number(m[1]);
    const b = Number(m[2]);
    const c = m[3] === undefined ? 0 : m[3] === '' ? 1 : Number(m[3]);
    const d = Number(m[4] ?? m[5] ?? 0);
    assert.ok((d - b) % (a - c) === 0, `non-integer solution in ${q}`);
    return (d - b) / (a - c);
  }
  if ((m = /^(.*)=\?$/.exec(q))) return evaluate(m[1] as string);
  throw new Error(`unrecognised question ${q}`);
}

void describe('synthetic tasks', () => {
  const train = generateTasks({ seed: 7, split: 'train', count: 6000 });
  const test = generateTasks({ seed: 7, split: 'test', count: 600 });

  void it('is deterministic by seed and differs across seeds', () => {
    assert.deepEqual(generateTasks({ seed: 7, split: 'train', count: 200 }), train.slice(0, 200));
    const other = generateTasks({ seed: 8, split: 'train', count: 200 });
    const same = other.filter((p, i) => p.question === train[i]?.question).length;
    assert.ok(same < 20, `seeds 7 and 8 share ${same} of 200 positions`);
  });

  void it('generates the same problems on every machine and version (golden values)', () => {
    const first = generateTasks({ seed: 1, split: 'train', count: 3 }).map((p) => [
      p.id,
      p.question,
      p.answer,
    ]);
    assert.deepEqual(first, [
      ['syn-mul-1-288a5757', '1*5=?', '5'],
      ['syn-expr-1-fcdb2ecd', '7-5*8=?', '-33'],
      ['syn-mul-2-00612ce4', '37*2=?', '74'],
    ]);
    const firstTest = generateTasks({ seed: 1, split: 'test', count: 2 }).map((p) => p.question);
    assert.deepEqual(firstTest, ['323-7519=?', '293-50=?']);
  });

  void it('keeps train and test disjoint, across seeds too', () => {
    const trainQs = new Set(train.map((p) => p.question));
    for (const seed of [1, 2, 'x']) {
      for (const p of generateTasks({ seed, split: 'test', count: 400 })) {
        assert.equal(trainQs.has(p.question), false, `test question ${p.question} also in train`);
        assert.equal(p.split, 'test');
        assert.equal(splitOf(p.question), 'test');
      }
    }
    for (const p of train) assert.equal(splitOf(p.question), 'train');
    // a different seed for train still never yields a test question
    const testQs = new Set(test.map((p) => p.question));
    for (const p of generateTasks({ seed: 99, split: 'train', count: 4000 }))
      assert.equal(testQs.has(p.question), false);
  });

  void it('holds out about testFraction of the question space', () => {
    let nTest = 0;
    const n = 20000;
    for (let i = 0; i < n; i++) if (splitOf(`${i}+${i * 7 + 3}=?`) === 'test') nTest++;
    // binomial(20000, 0.2): sd ≈ 57; allow 5 sd
    assert.ok(Math.abs(nTest - 0.2 * n) < 285, `test share ${nTest / n}`);
    assert.equal(splitOf('1+1=?', 0.999999), 'test');
    assert.throws(() => splitOf('1+1=?', 0), InvalidArgumentError);
  });

  void it('gives correct answers, recomputed from the question', () => {
    for (const p of [...train, ...test]) {
      assert.equal(p.answer, String(solveQuestion(p)), `${p.question} -> ${p.answer}`);
      assert.match(p.answer, /^-?\d+$/);
    }
  });

  void it('writes worked solutions whose arithmetic steps are all true and that end in the boxed answer', () => {
    for (const p of train.slice(0, 3000)) {
      assert.ok(p.solution.endsWith(`\\boxed{${p.answer}}`), p.solution);
      const body = p.solution.slice(0, p.solution.lastIndexOf('\\boxed'));
      for (const part of body.split(/, |\. |, so |so /)) {
        const clause = part.replace(/\.$/, '').trim();
        if (!clause.includes('=') || clause.includes('x')) continue;
        const sides = clause.split('=');
        const values = sides.map((side) => evaluate(side));
        for (const v of values) assert.equal(v, values[0], `false step "${clause}" in ${p.solution}`);
      }
    }
  });

  void it('covers every family and difficulty, with ids that follow the question', () => {
    for (const f of FAMILIES) {
      for (const d of DIFFICULTIES) {
        assert.ok(
          train.some((p) => p.family === f && p.difficulty === d),
          `no ${f}/${d} problem in 6000 draws`,
        );
      }
    }
    for (const p of train.slice(0, 100)) assert.equal(p.id, problemId(p));
    assert.match(train[0]?.id ?? '', /^syn-[a-z]+-[123]-[0-9a-f]{8}$/);
  });

  void it('stays short and in printable ASCII for a character-level model', () => {
    for (const p of train) {
      const prompt = taskPrompt(p, 'short');
      assert.ok(p.question.length <= 40, p.question);
      assert.ok(prompt.length + p.solution.length <= 200, `${prompt} ${p.solution}`);
      assert.match(prompt + p.solution, /^[\x20-\x7e\n]*$/);
    }
    const ex = warmupExample(train[0] as TaskProblem);
    assert.equal(ex.prompt, `${train[0]?.question}\nAnswer in \\boxed{}.`);
    assert.ok(
      taskPrompt(train[0] as TaskProblem, 'full').endsWith("Repeat the final answer using a '\\boxed{}'."),
    );
  });

  void it('makes the test split unique by default and reports an exhausted space', () => {
    const qs = test.map((p) => p.question);
    assert.equal(new Set(qs).size, qs.length);
    // 1-digit multiplication has 81 questions; about 16 are test questions
    assert.throws(
      () => generateTasks({ seed: 1, split: 'test', count: 100, families: ['mul'], difficulties: [1] }),
      (e: unknown) =>
        e instanceof InvalidArgumentError && /cannot generate 100 unique test problems/.test(e.message),
    );
    const small = generateTasks({
      seed: 1,
      split: 'train',
      count: 300,
      families: ['mul'],
      difficulties: [1],
    });
    assert.equal(small.length, 300); // train allows repeats by default
  });

  void it('rejects bad options with every problem listed', () => {
    assert.throws(
      () =>
        // @ts-expect-error deliberately invalid family and difficulty
        iterateTasks({ seed: 1, split: 'train', count: 0, families: ['nope'], difficulties: [4] }).next(),
      (e: unknown) => e instanceof InvalidArgumentError && e.problems.length === 3,
    );
  });
});
