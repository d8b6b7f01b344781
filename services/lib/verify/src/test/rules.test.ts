// Unit tests of the pure rules (no worker): extraction details, normalisation steps, exact numbers, and
// the fast path's hand-off of undecided pairs to the symbolic step.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  compareAnswers,
  extractAnswer,
  extractAnswerIs,
  extractBoxed,
  normalizeAnswer,
  numbersEqual,
  parseNumber,
} from '../index.js';

void test('box extraction: first/last, nesting, escapes, unterminated, caps', () => {
  const text = 'a \\boxed{1} b \\fbox{\\frac{2}{3}} c \\boxed{\\{x\\}} d';
  assert.equal(extractBoxed(text, 'first').answer, '1');
  assert.equal(extractBoxed(text, 'last').answer, '\\{x\\}');
  assert.deepEqual(extractBoxed('\\boxed{1', 'last'), { answer: null, found: true, unterminated: true });
  assert.equal(extractBoxed('\\boxed{\\boxed{\\boxed{7}}}').answer, '7');
  assert.equal(
    extractBoxed('\\boxed{\\boxed{7} + 1}', 'first').answer,
    '\\boxed{7} + 1',
    'only a whole-box content unwraps',
  );
  // 'last' is the last occurrence of the command, as the reference's rfind: here the inner box.
  assert.equal(extractBoxed('\\boxed{\\boxed{7} + 1}', 'last').answer, '7');
  assert.equal(extractBoxed('no box here').found, false);
  assert.deepEqual(extractAnswer(`\\boxed{${'1'.repeat(50)}}`, { maxAnswerChars: 10 }), {
    answer: null,
    rule: 'answer-too-long',
  });
  assert.deepEqual(extractAnswer('\\boxed{  }'), { answer: null, rule: 'empty-box' });
});

void test('fallbacks apply only when enabled and only without a box', () => {
  const gsm = 'She pays 3 * 4 = 12 dollars.\n#### 12\n';
  assert.deepEqual(extractAnswer(gsm), { answer: null, rule: 'no-answer' });
  assert.deepEqual(extractAnswer(gsm, { gsm8k: true }), { answer: '12', rule: 'gsm8k' });
  assert.deepEqual(extractAnswer(`${gsm} \\boxed{13}`, { gsm8k: true }), { answer: '13', rule: 'boxed' });
  assert.equal(
    extractAnswerIs('Thus, the final answer is $\\frac{1}{2}$. I hope it is correct.'),
    '\\frac{1}{2}',
  );
  assert.equal(extractAnswerIs('The answer is 3.75 cm.\nDone'), '3.75 cm');
  assert.equal(extractAnswerIs('nothing'), null);
});

void test('MATH normalisation steps', () => {
  const cases: [string, string][] = [
    ['\\left( \\dfrac{1}{2} \\right)', '(\\frac{1}{2})'],
    ['\\frac12', '\\frac{1}{2}'],
    ['\\sqrt3', '\\sqrt{3}'],
    ['3/4', '\\frac{3}{4}'],
    ['x = 5', '5'],
    ['50\\%', '50'],
    ['\\$1,234.50', '1234.50'],
    ['12 \\text{ cm}^2', '12'],
    ['90^\\circ', '90'],
    ['.5', '\\frac{1}{2}'],
    ['\\text{Monday}.', 'Monday'],
    ['\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}', '\\begin{pmatrix}1\\\\2\\end{pmatrix}'],
  ];
  for (const [input, want] of cases) assert.equal(normalizeAnswer(input), want, input);
  assert.equal(normalizeAnswer('\\sin x + 1', { keepSpaces: true }), '\\sin x + 1');
});

void test('normalisation fast path: plain and grouped decimals give what the full rule chain gives', () => {
  // A leading space defeats the fast path (its patterns are anchored) and the chain trims it first.
  const viaChain = (s: string, o: { keepSpaces?: boolean; keepEquation?: boolean }): string =>
    normalizeAnswer(` ${s}`, o);
  const inputs = ['0', '-0', '0.5', '-0.5', '0.50', '00.5', '5', '1,234', '-1,234.5', '12,345,678.901'];
  inputs.push('1'.repeat(400), '1,23', '1,2345', '1.', '.5', '1.2.3', '--1', '1e5');
  let seed = 7;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  for (let i = 0; i < 2_000; i++) {
    const n = rnd(2_000_000_000);
    const sign = rnd(4) === 0 ? '-' : '';
    const frac = rnd(3) === 0 ? `.${rnd(10_000)}` : '';
    inputs.push(`${sign}${n}${frac}`, `${sign}${n.toLocaleString('en-US')}${frac}`);
  }
  for (const input of inputs)
    for (const o of [{}, { keepSpaces: true }, { keepEquation: true }])
      assert.equal(normalizeAnswer(input, o), viaChain(input, o), `${input} ${JSON.stringify(o)}`);
  assert.equal(normalizeAnswer('1,234,567'), '1234567');
  assert.equal(normalizeAnswer('0.5'), '\\frac{1}{2}');
});

void test('exact numbers: big integers, exponent caps, tolerance only for inexact values', () => {
  const big = parseNumber('1'.repeat(400));
  assert.ok(big && big.den === 1n && big.num === BigInt('1'.repeat(400)));
  assert.equal(parseNumber('1e999999'), null, 'an exponent beyond the cap is not expanded');
  assert.equal(parseNumber('x+1'), null);
  const n = (s: string) => parseNumber(s) ?? assert.fail(s);
  assert.equal(numbersEqual(n('1000000'), n('1000001')), 'different');
  assert.equal(numbersEqual(n('\\frac{1}{3}'), n('0.3333333')), 'tolerance');
  assert.equal(numbersEqual(n('\\frac{\\pi}{2}'), n('\\pi/2')), 'exact');
  assert.equal(numbersEqual(n('2\\frac{1}{4}'), n('2.25')), 'exact');
});

void test('the in-thread fast path decides what it can and hands the rest on as pending', () => {
  assert.deepEqual(compareAnswers('1,000', '1000'), { equal: true, rule: 'normalized-string' });
  assert.deepEqual(compareAnswers('\\{1,2\\}', '\\{2,1\\}'), { equal: true, rule: 'set' });
  assert.deepEqual(compareAnswers('2\\sqrt{2}', '\\sqrt{8}'), {
    equal: false,
    rule: 'no-match',
    pending: true,
  });
  assert.deepEqual(compareAnswers('(1, \\sqrt{8})', '(1, 2\\sqrt{2})'), {
    equal: false,
    rule: 'no-match',
    pending: true,
  });
  assert.deepEqual(compareAnswers('(1, 3)', '(1, 4)'), { equal: false, rule: 'structure-mismatch' });
  assert.deepEqual(compareAnswers('(1, 3)', '(1, 2, 3)'), { equal: false, rule: 'structure-mismatch' });
  // With a symbolic callback the same pair is decided (the worker passes compute-engine's check here).
  const calls: [string, string][] = [];
  const v = compareAnswers('2\\sqrt{2}', '\\sqrt{8}', {
    symbolic: (a, b) => {
      calls.push([a, b]);
      return true;
    },
  });
  assert.deepEqual(v, { equal: true, rule: 'symbolic' });
  assert.deepEqual(calls, [['2\\sqrt{2}', '\\sqrt{8}']]);
});
