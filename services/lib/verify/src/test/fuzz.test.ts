// Property/fuzz test: random and adversarial strings (deep nesting, huge numbers, megabyte strings,
// unicode, LaTeX token soup, engine-hanging inputs) never make the verifier throw, and every call returns
// within its budget plus scheduling slack.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import fc from 'fast-check';

import {
  compareAnswers,
  DEFAULT_MAX_RUN_WALL_FACTOR,
  extractAnswer,
  normalizeAnswer,
  parseNumber,
  Verifier,
} from '../index.js';

const BUDGET_MS = 50;
/** Timer and scheduling slack on a loaded 2-core machine; the benchmark reports the true maximum. */
const SLACK_MS = 450;
/**
 * A call may also wait for a worker to start when two terminations in a row used up the spare; that wait
 * is bounded by maxQueueWaitMs (and ends as a `timeout` status, never a wrong verdict).
 */
const MAX_WAIT_MS = 300;

const verifier = new Verifier({ budgetMs: BUDGET_MS, spares: 1, maxQueueWaitMs: MAX_WAIT_MS });
before(() => verifier.ready());
after(() => verifier.close());

const latexTokens = fc.constantFrom(
  '\\frac',
  '\\sqrt',
  '\\boxed',
  '\\fbox',
  '{',
  '}',
  '(',
  ')',
  '[',
  ']',
  '\\{',
  '\\}',
  '^',
  '_',
  'x',
  'y',
  '2',
  '10',
  '.',
  ',',
  '=',
  '+',
  '-',
  '\\pi',
  '\\sin',
  '\\log',
  '\\cdot',
  '\\times',
  '\\%',
  '$',
  '\\text{',
  ' cm',
  '\\left(',
  '\\right)',
  '!',
  '\\infty',
  '\\cup',
  '#### ',
  'The answer is ',
  '9999999999',
  'e',
  'π',
  '−',
  '√',
  '\\\\',
  '\\',
  '\\prod_{k=1}^{9999}',
  '\\sum_{n=1}^{99999}',
  '\\int',
  '\\binom{9999}{99}',
);

const latexSoup = fc.array(latexTokens, { maxLength: 60 }).map((t) => t.join(''));

const adversarial = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 200 }),
  fc.string({ unit: 'grapheme', maxLength: 200 }),
  latexSoup,
  latexSoup.map((s) => `\\boxed{${s}}`),
  fc.integer({ min: 1, max: 5_000 }).map((n) => `\\boxed{${'{'.repeat(n)}1${'}'.repeat(n)}}`),
  fc.integer({ min: 1, max: 5_000 }).map((n) => `\\boxed{${'\\frac{1}{'.repeat(n)}2${'}'.repeat(n)}}`),
  fc.integer({ min: 1, max: 5_000 }).map((n) => `\\boxed{${'('.repeat(n)}`),
  fc.integer({ min: 1, max: 3_000 }).map((n) => `\\boxed{${'9'.repeat(n)}}`),
  fc.integer({ min: 1, max: 999_999 }).map((n) => `\\boxed{1e${n}}`),
  fc.integer({ min: 1, max: 9_999 }).map((n) => `\\boxed{10^{${n}}}`),
  fc.integer({ min: 1, max: 200 }).map((n) => `${'\\boxed{'.repeat(n)}7${'}'.repeat(n)}`),
  fc.integer({ min: 1, max: 400 }).map((n) => `\\boxed{${'x+'.repeat(n)}1}`),
  fc.constantFrom('\\boxed{100000!}', '\\boxed{\\prod_{k=1}^{100000} k}', '\\boxed{\\binom{100000}{50000}}'),
);

const labels = fc.oneof(
  fc.constantFrom(
    '1',
    '0',
    '\\sqrt{8}',
    'x^2+2x+1',
    'C',
    'Yes',
    '[1,2)',
    '\\{1,2\\}',
    '1000',
    '\\frac{1}{2}',
  ),
  fc.string({ unit: 'binary', maxLength: 50 }),
  latexSoup,
);

async function timed(response: unknown, label: unknown): Promise<number> {
  const t0 = performance.now();
  const r = await verifier.verify(response, label);
  const ms = performance.now() - t0;
  assert.ok(r.reward === 0 || r.reward === 1);
  assert.equal(typeof r.reason, 'string');
  assert.ok(r.extracted === null || typeof r.extracted === 'string');
  return ms;
}

void test('the pure rules never throw on arbitrary input', () => {
  fc.assert(
    fc.property(adversarial, labels, (a, b) => {
      extractAnswer(a, { gsm8k: true, answerIs: true });
      normalizeAnswer(a);
      parseNumber(normalizeAnswer(b));
      const v = compareAnswers(a.slice(0, 2_000), b);
      assert.equal(typeof v.equal, 'boolean');
    }),
    { numRuns: 300, seed: 4242 },
  );
});

void test('verify never throws and stays within the budget on adversarial input', async () => {
  let worst = 0;
  await fc.assert(
    fc.asyncProperty(adversarial, labels, async (a, b) => {
      const ms = await timed(a, b);
      worst = Math.max(worst, ms);
      assert.ok(
        ms <= BUDGET_MS * DEFAULT_MAX_RUN_WALL_FACTOR + MAX_WAIT_MS + SLACK_MS,
        `took ${ms.toFixed(0)} ms on ${JSON.stringify(a.slice(0, 80))}`,
      );
    }),
    { numRuns: 150, seed: 1717 },
  );
  assert.ok(worst > 0);
});

void test('megabyte strings and non-string values are bounded too', async () => {
  const mb = 'a'.repeat(1 << 20);
  const cases: [unknown, unknown][] = [
    [mb, '1'],
    [`${mb.slice(0, (1 << 20) - 20)}\\boxed{42}`, '42'],
    [`\\boxed{${'{'.repeat((1 << 20) - 10)}`, '1'],
    ['\\boxed{1}'.repeat(100_000), '1'],
    [`${'9'.repeat(1 << 20)}`, '9'],
    ['x'.repeat((1 << 20) + 1), '1'],
    [`The answer is ${'7'.repeat(1 << 19)}`, '7'],
    [undefined, '1'],
    [{ toString: () => '\\boxed{1}' }, '1'],
    ['\\boxed{1}', 1],
  ];
  for (const [a, b] of cases) {
    const ms = await timed(a, b);
    assert.ok(ms <= BUDGET_MS + MAX_WAIT_MS + SLACK_MS, `took ${ms.toFixed(0)} ms`);
  }
  const mbBox = await verifier.verify(`${mb.slice(0, (1 << 20) - 20)}\\boxed{42}`, '42');
  assert.equal(mbBox.reward, 1);
});
