// Tests of the judge-format warm-up pairs: the executable check, the cycle of kinds, both option orders,
// balanced verdicts that agree with the check, and the re-solve and reflection pairs.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { generateTasks } from '../tasks/index.js';
import { NO_FIRST_TEMPLATES, resolvePrompt, TEMPLATES } from '../templates/index.js';
import { wrongAnswerFor } from './judge.js';
import {
  compareCheck,
  JUDGE_WARMUP_KINDS,
  judgeWarmupPair,
  reasoningOf,
  type WarmupSource,
} from './warmup.js';

const CHECK = /(\S+) vs (\S+): ((?:\S\S[=x] )+)(same|differ)\./g;

describe('compareCheck', () => {
  it('writes both numbers, then one mark per aligned character, then the outcome', () => {
    assert.equal(compareCheck('87', '87'), '87 vs 87: 88= 77= same.');
    assert.equal(compareCheck('84', '87'), '84 vs 87: 88= 47x differ.');
    assert.equal(compareCheck('9', '10'), '9 vs 10: _1x 90x differ.');
    assert.equal(compareCheck('-1', '0'), '-1 vs 0: -_x 10x differ.');
    assert.equal(compareCheck('100', '99'), '100 vs 99: 1_x 09x 09x differ.');
  });

  it('says "same" exactly when the strings are equal, and every mark matches its pair', () => {
    for (let n = -30; n <= 130; n += 7) {
      for (const gold of [String(n), wrongAnswerFor(String(n))]) {
        const shown = String(n);
        const text = compareCheck(shown, gold);
        const m = [...text.matchAll(CHECK)][0];
        assert.ok(m, text);
        assert.equal(m[4] === 'same', shown === gold, text);
        for (const pair of (m[3] as string).trim().split(' '))
          assert.equal(pair[2] === '=', pair[0] === pair[1], `${text}: ${pair}`);
      }
    }
  });

  it('bounds the compared strings, and decides on the whole strings', () => {
    assert.ok(compareCheck('1'.repeat(500), '2'.repeat(500)).length < 300);
    assert.match(compareCheck(`${'1'.repeat(60)}2`, `${'1'.repeat(60)}3`), / differ\.$/);
  });
});

describe('judgeWarmupPair', () => {
  const problems: WarmupSource[] = generateTasks({
    seed: 3,
    split: 'train',
    count: 60,
    families: ['add', 'sub', 'compare', 'remainder'],
    difficulties: [1],
  });
  const pairs = Array.from({ length: 280 }, (_, pos) => {
    const p = problems[pos % problems.length] as WarmupSource;
    return {
      p,
      pos,
      kind: JUDGE_WARMUP_KINDS[pos % JUDGE_WARMUP_KINDS.length],
      ...judgeWarmupPair(p, 'short', 7, pos),
    };
  });

  it('is deterministic', () => {
    const p = problems[0] as WarmupSource;
    assert.deepEqual(judgeWarmupPair(p, 'short', 7, 5), judgeWarmupPair(p, 'short', 7, 5));
  });

  it('answers judge items with the reasoning, a check that decides the verdict, then the verdict', () => {
    const verdicts = new Map<string, number>();
    for (const { p, kind, prompt, target } of pairs) {
      if (kind === 'reflection' || kind === 'resolve') continue;
      const verdict = /\\boxed\{(Yes|No|A|B)\}$/.exec(target)?.[1];
      assert.ok(verdict, `${kind}: ${target}`);
      verdicts.set(verdict, (verdicts.get(verdict) ?? 0) + 1);
      assert.ok(target.startsWith(reasoningOf(p.solution)), 'the worked reasoning first');
      assert.ok(prompt.includes(p.question));
      const checks = [...target.matchAll(CHECK)];
      assert.equal(checks.length, kind === 'pairwise' ? 2 : 1, target);
      for (const c of checks) {
        assert.equal(c[2], p.answer, 'compared against the gold answer');
        assert.equal(c[4] === 'same', c[1] === p.answer, target);
      }
      const same = checks.map((c) => c[4] === 'same');
      if (kind === 'pairwise') {
        const [a, b] = [/\bA[:)] (\S+)/.exec(prompt)?.[1], /\bB[:)] (\S+)/.exec(prompt)?.[1]];
        assert.deepEqual([checks[0]?.[1], checks[1]?.[1]], [a, b], 'checks A then B as shown');
        assert.equal(verdict, same[0] ? 'A' : 'B');
        assert.notEqual(same[0], same[1]);
      } else {
        const shown = /(?:Answer|Given): (\S+)/.exec(prompt)?.[1];
        assert.equal(checks[0]?.[1], shown, 'checks the answer the prompt shows');
        assert.equal(['Yes', 'A'].includes(verdict), same[0], `verdict follows the check: ${target}`);
        assert.ok([p.answer, wrongAnswerFor(p.answer)].includes(shown as string));
      }
    }
    for (const v of ['Yes', 'No', 'A', 'B'])
      assert.ok((verdicts.get(v) ?? 0) >= 15, `verdict ${v}: ${verdicts.get(v)}`);
    const yes = (verdicts.get('Yes') ?? 0) / ((verdicts.get('Yes') ?? 0) + (verdicts.get('No') ?? 0));
    assert.ok(yes > 0.35 && yes < 0.65, `Yes share ${yes}`);
  });

  it('lists the options in both orders: recycling templates and their no-first counterparts', () => {
    for (const { kind, prompt } of pairs) {
      if (!kind?.startsWith('pointwise')) continue;
      const style = kind.replace('/no-first', '') as 'pointwise-yesno' | 'pointwise-ab';
      const first = style === 'pointwise-yesno' ? ['Yes', 'No'] : ['A', 'B'];
      const at = (v: string) =>
        prompt.indexOf(`\\boxed{${v}}`) >= 0 ? prompt.indexOf(`\\boxed{${v}}`) : prompt.indexOf(`${v})`);
      const noFirst = kind.endsWith('/no-first');
      const set = noFirst ? NO_FIRST_TEMPLATES[style].short : TEMPLATES[style].short;
      const other = noFirst ? TEMPLATES[style].short : NO_FIRST_TEMPLATES[style].short;
      const head = (t: { text: string }) => t.text.slice(t.text.lastIndexOf('}}') + 2);
      assert.ok(
        set.some((t) => prompt.endsWith(head(t))),
        `${kind}: ${prompt}`,
      );
      assert.ok(!other.some((t) => prompt.endsWith(head(t))), `${kind}: ${prompt}`);
      assert.equal(at(first[0] as string) > at(first[1] as string), noFirst, `${kind}: ${prompt}`);
    }
  });

  it('cycles every kind, including reflection and the test-time re-solve prompt', () => {
    assert.deepEqual(new Set(pairs.map((x) => x.kind)), new Set(JUDGE_WARMUP_KINDS));
    for (const { p, kind, prompt, target } of pairs) {
      if (kind === 'resolve') {
        assert.equal(prompt, resolvePrompt(p.question, wrongAnswerFor(p.answer), 'short'));
        assert.match(prompt, /Not \S+\. Solve again\./);
      }
      if (kind === 'resolve' || kind === 'reflection') {
        assert.equal(target, p.solution, 're-solved with the worked solution');
        assert.ok(prompt.includes(wrongAnswerFor(p.answer)), 'the wrong answer shown');
      }
    }
  });
});
