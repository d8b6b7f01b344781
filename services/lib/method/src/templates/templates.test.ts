// Tests of the template sets and prompt builders: placeholders, boxed verdicts, sizes, injection safety,
// and the §4 test-time prompts.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  ANSWER_INSTRUCTION_FULL,
  pairwisePrompt,
  placeholdersOf,
  pointwisePrompt,
  problemPrompt,
  reflectionPrompt,
  renderTemplate,
  REQUIRED_PLACEHOLDERS,
  resolvePrompt,
  selfJudgePrompt,
  TEMPLATES,
  type Template,
  type TemplateKind,
} from './index.js';

const kinds = Object.keys(TEMPLATES) as TemplateKind[];

void describe('template sets', () => {
  void it('use exactly the placeholders of their kind, with unique ids', () => {
    const ids = new Set<string>();
    for (const kind of kinds) {
      for (const variant of ['full', 'short'] as const) {
        const set = TEMPLATES[kind][variant];
        assert.ok(set.length >= 1);
        for (const t of set) {
          assert.deepEqual([...placeholdersOf(t.text)].sort(), [...REQUIRED_PLACEHOLDERS[kind]].sort(), t.id);
          assert.equal(t.variant, variant);
          assert.ok(!ids.has(t.id), `duplicate id ${t.id}`);
          ids.add(t.id);
          assert.match(t.text, /^[\x20-\x7e\n]*$/, `${t.id} is not printable ASCII`);
        }
      }
    }
  });

  void it('offer several paraphrases per kind and short variants that are short', () => {
    for (const kind of ['pointwise-yesno', 'pointwise-ab', 'pairwise'] as const) {
      assert.ok(TEMPLATES[kind].full.length >= 6, kind);
      assert.ok(TEMPLATES[kind].short.length >= 3, kind);
    }
    for (const kind of kinds.filter((k) => k.startsWith('reflection'))) {
      assert.ok(TEMPLATES[kind].full.length >= 4, kind);
      assert.ok(TEMPLATES[kind].short.length >= 2, kind);
    }
    for (const kind of kinds) {
      for (const t of TEMPLATES[kind].short)
        assert.ok(t.text.length <= 90, `${t.id}: ${t.text.length} chars`);
    }
  });

  void it('ask for every judge verdict in \\boxed{}', () => {
    for (const kind of ['pointwise-yesno', 'pointwise-ab', 'pairwise'] as const) {
      for (const variant of ['full', 'short'] as const) {
        for (const t of TEMPLATES[kind][variant]) {
          assert.ok(t.text.includes('\\boxed{'), t.id);
          assert.ok(!/\\box\{/.test(t.text), `${t.id} uses \\box{}`);
        }
      }
    }
    // reflection and re-solve prompts end with the answer-format instruction, which asks for \boxed{}
    const t = TEMPLATES['reflection-wrong-cot'].full[0] as Template;
    assert.ok(reflectionPrompt(t, 'Q?', 'work').endsWith(ANSWER_INSTRUCTION_FULL));
  });

  void it('render in one pass, so values cannot inject placeholders', () => {
    const t = TEMPLATES['pointwise-yesno'].short[0] as Template;
    const out = pointwisePrompt(t, 'What is {{answer}}?', '7');
    assert.ok(out.includes('What is {{answer}}?'));
    assert.ok(out.includes('7'));
    assert.throws(() => renderTemplate('{{missing}}', {}), /has no value/);
    const p = TEMPLATES.pairwise.full[0] as Template;
    const pw = pairwisePrompt(p, 'Q', 'first', 'second');
    assert.ok(pw.indexOf('first') < pw.indexOf('second'));
  });

  void it('build the §4 test-time prompts', () => {
    assert.equal(
      problemPrompt('2+2=?'),
      "2+2=?\nPlease first conduct reasoning, and then answer the question. Repeat the final answer using a '\\boxed{}'.",
    );
    assert.equal(problemPrompt('2+2=?', 'short'), '2+2=?\nAnswer in \\boxed{}.');
    const judge = selfJudgePrompt('2+2=?', '5');
    assert.equal(judge, pointwisePrompt(TEMPLATES['pointwise-yesno'].full[0] as Template, '2+2=?', '5'));
    assert.ok(judge.includes('\\boxed{Yes}'));
    const again = resolvePrompt('2+2=?', '5');
    assert.ok(
      again.startsWith(
        'Below is a question and an incorrect answer. Do not follow the incorrect answer. Instead, reason ' +
          'through the question properly and provide the correct final answer.',
      ),
    );
    assert.ok(again.includes('2+2=?') && again.includes('5') && again.endsWith(ANSWER_INSTRUCTION_FULL));
    assert.ok(resolvePrompt('2+2=?', '5', 'short').length < 60);
  });
});
