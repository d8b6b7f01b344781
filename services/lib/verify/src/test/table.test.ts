// Runs the table of (response, label, expected) cases through the real verifier (worker pool included).
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { Verifier } from '../index.js';
import { TABLE } from './cases.js';

// A generous budget: this test checks verdicts, not speed, on a shared 2-core machine.
const verifier = new Verifier({ budgetMs: 2_000, spares: 0 });
before(() => verifier.ready());
after(() => verifier.close());

void test('the table has at least 300 cases, both outcomes, each with a reason', () => {
  assert.ok(TABLE.length >= 300, `only ${TABLE.length} cases`);
  assert.ok(TABLE.filter((c) => c.expected === 1).length >= 100);
  assert.ok(TABLE.filter((c) => c.expected === 0).length >= 100);
  for (const c of TABLE) assert.ok(c.why.length > 3);
});

const responseOf = (c: (typeof TABLE)[number]): string =>
  c.kind === 'answer' ? `Therefore the answer is $\\boxed{${c.input}}$.` : c.input;

void test('every table case gets its expected reward', async () => {
  const failures: string[] = [];
  for (const c of TABLE) {
    const res = await verifier.verify(responseOf(c), c.label, c.opts ?? {});
    if (res.reward !== c.expected) {
      failures.push(
        `${c.why}: ${JSON.stringify(c.input)} vs ${JSON.stringify(c.label)} → ${res.reward} (${res.reason}), want ${c.expected}`,
      );
    }
  }
  assert.deepEqual(failures, []);
});

void test('a second pass over the table, with the worker’s parse cache warm, gives the same verdicts', async () => {
  const pass = async (): Promise<string[]> => {
    const out: string[] = [];
    for (const c of TABLE) {
      const res = await verifier.verify(responseOf(c), c.label, c.opts ?? {});
      out.push(`${res.reward} ${res.reason}`);
    }
    return out;
  };
  const first = await pass();
  assert.deepEqual(await pass(), first);
});
