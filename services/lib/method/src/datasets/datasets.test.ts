// Tests of the dataset loaders: every format, image reporting, per-line errors with line and field,
// bounds (line bytes, records, errors), chunk boundaries, empty inputs, files, and the boxed extractor.
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import {
  allBoxed,
  DatasetError,
  detectFormat,
  firstBoxed,
  gsm8kAnswer,
  lastBoxed,
  loadDataset,
  loadDatasetFile,
  loadDatasetText,
  readLines,
  syntheticRecords,
  toEvalLine,
  toSparkLine,
  type RecordError,
} from './index.js';

const jsonl = (...rows: unknown[]): string =>
  rows.map((r) => (typeof r === 'string' ? r : JSON.stringify(r))).join('\n');
const chat = (content: unknown): string => JSON.stringify([{ role: 'user', content }]);

function errorAt(errors: RecordError[], line: number): RecordError {
  const e = errors.find((x) => x.line === line);
  assert.ok(e, `no error reported for line ${line}: ${JSON.stringify(errors)}`);
  return e;
}

void describe('SPARK training format', () => {
  void it('reads text records, reports image records, and names the bad field and line', async () => {
    const text = jsonl(
      { message: chat([{ type: 'text', text: 'What is 2+3?' }]), answer: '5' },
      {
        message: chat([
          { type: 'image', image: 'img/1.png' },
          { type: 'text', text: 'Area?' },
        ]),
        answer: '12',
      },
      { message: 'not json', answer: '1' },
      { message: chat([{ type: 'text', text: 'Q' }]) },
      { message: chat('plain string content'), answer: 7 },
      { message: JSON.stringify([{ role: 'assistant', content: 'x' }]), answer: '1' },
      '{"message": ',
      '',
      { message: chat([{ type: 'video', video: 'v.mp4' }]), answer: '1' },
    );
    const r = await loadDatasetText(text, { format: 'spark', source: 'train.jsonl' });
    assert.equal(r.format, 'spark');
    assert.deepEqual(
      r.records.map((x) => [x.id, x.question, x.answer, x.line]),
      [
        ['train.jsonl:1', 'What is 2+3?', '5', 1],
        ['train.jsonl:5', 'plain string content', '7', 5],
      ],
    );
    assert.equal(r.lines, 8);
    assert.equal(r.imageRecords, 1);
    assert.equal(r.errorCount, 6);
    const img = errorAt(r.errors, 2);
    assert.equal(img.code, 'unsupported-image');
    assert.equal(img.field, 'message');
    assert.match(img.message, /img\/1\.png.*text models cannot use images/);
    assert.deepEqual([errorAt(r.errors, 3).code, errorAt(r.errors, 3).field], ['invalid-field', 'message']);
    assert.deepEqual([errorAt(r.errors, 4).code, errorAt(r.errors, 4).field], ['missing-field', 'answer']);
    assert.match(errorAt(r.errors, 6).message, /unexpected role "assistant"/);
    assert.equal(errorAt(r.errors, 7).code, 'malformed-json');
    assert.equal(errorAt(r.errors, 9).field, 'message[0].content[0]');
  });

  void it('keeps images when allowed, and round-trips its own writer', async () => {
    const text = jsonl({
      message: chat([
        { type: 'image', image: 'a.png' },
        { type: 'text', text: 'Q?' },
      ]),
      answer: '3',
      id: 'r1',
    });
    const r = await loadDatasetText(text, { allowImages: true });
    assert.deepEqual(r.records[0]?.images, ['a.png']);
    assert.equal(r.records[0]?.id, 'r1');
    const back = await loadDatasetText(toSparkLine({ question: 'Line1\n"quoted" {x}', answer: '-4' }));
    assert.equal(back.format, 'spark');
    assert.equal(back.records[0]?.question, 'Line1\n"quoted" {x}');
    assert.equal(back.records[0]?.answer, '-4');
  });
});

void describe('evaluation, GSM8K, MATH and plain formats', () => {
  void it('reads evaluation records and flags image_path', async () => {
    const r = await loadDatasetText(
      jsonl(
        { dataset: 'mathvista', problem: 'P1', answer: 'B', image_path: 'x.png' },
        { dataset: 'gsm', problem: 'P2', answer: 4, image_path: '' },
        { dataset: 'gsm', answer: '1' },
      ),
    );
    assert.equal(r.format, 'eval');
    assert.deepEqual(
      r.records.map((x) => [x.dataset, x.question, x.answer]),
      [['gsm', 'P2', '4']],
    );
    assert.deepEqual(
      [errorAt(r.errors, 1).code, errorAt(r.errors, 1).field],
      ['unsupported-image', 'image_path'],
    );
    assert.deepEqual([errorAt(r.errors, 3).code, errorAt(r.errors, 3).field], ['missing-field', 'problem']);
    const line = toEvalLine({ question: 'Q', answer: '1', dataset: 'd' });
    assert.deepEqual(JSON.parse(line), { dataset: 'd', problem: 'Q', answer: '1', image_path: '' });
  });

  void it('reads GSM8K answers after the last ####', async () => {
    assert.equal(gsm8kAnswer('so 3 #### 1,000'), '1000');
    assert.equal(gsm8kAnswer('#### 12,5'), '12,5');
    assert.equal(gsm8kAnswer('a #### 1 #### -7.5 '), '-7.5');
    assert.equal(gsm8kAnswer('no marker'), null);
    const r = await loadDatasetText(
      jsonl(
        { question: 'Tom has 3 apples...', answer: 'He has 3+4=7.\n#### 7' },
        { question: 'Q2', answer: 'forgot the marker' },
      ),
    );
    assert.equal(r.format, 'gsm8k');
    assert.equal(r.records[0]?.answer, '7');
    assert.equal(r.records[0]?.solution, 'He has 3+4=7.');
    assert.deepEqual([errorAt(r.errors, 2).code, errorAt(r.errors, 2).field], ['no-answer', 'answer']);
  });

  void it('reads MATH gold from the last complete box, preferring an answer field', async () => {
    const r = await loadDatasetText(
      jsonl(
        { problem: 'P', solution: 'first \\boxed{1} then \\boxed{\\frac{1}{2}}', type: 'Algebra' },
        { problem: 'P', solution: 'the set \\fbox{\\{1,2\\}}' },
        { problem: 'P', solution: 'no box here' },
        { problem: 'P', solution: 'broken \\boxed{12' },
        { problem: 'P', solution: '\\boxed{9}', answer: '3' },
      ),
      { format: 'math' },
    );
    assert.deepEqual(
      r.records.map((x) => x.answer),
      ['\\frac{1}{2}', '\\{1,2\\}', '3'],
    );
    assert.equal(r.records[0]?.dataset, 'Algebra');
    assert.equal(errorAt(r.errors, 3).code, 'no-answer');
    assert.equal(errorAt(r.errors, 4).field, 'solution');
  });

  void it('reads plain JSONL with configurable keys', async () => {
    const keys = { question: 'q', answer: 'a', id: 'uid', image: 'img' };
    const r = await loadDatasetText(
      jsonl({ q: 'Q1', a: 1, uid: 'u1' }, { q: 'Q2', a: '2', img: 'p.png' }, { q: ['x'], a: '3' }),
      { format: 'jsonl', keys },
    );
    assert.deepEqual(
      r.records.map((x) => [x.id, x.question, x.answer]),
      [['u1', 'Q1', '1']],
    );
    assert.deepEqual([errorAt(r.errors, 2).code, errorAt(r.errors, 2).field], ['unsupported-image', 'img']);
    assert.deepEqual([errorAt(r.errors, 3).code, errorAt(r.errors, 3).field], ['invalid-field', 'q']);
  });

  void it('detects formats, and refuses an unrecognisable first object', async () => {
    assert.equal(detectFormat({ message: '[]', answer: '1' }), 'spark');
    assert.equal(detectFormat({ problem: 'p', solution: 's' }), 'math');
    assert.equal(detectFormat({ problem: 'p', answer: 's', dataset: 'd' }), 'eval');
    assert.equal(detectFormat({ question: 'q', answer: 'x #### 1' }), 'gsm8k');
    assert.equal(detectFormat({ question: 'q', answer: '1' }), 'jsonl');
    assert.equal(detectFormat([1]), null);
    await assert.rejects(
      loadDatasetText('{"foo": 1}'),
      (e: unknown) => e instanceof DatasetError && /pass format/.test(e.message),
    );
    await assert.rejects(loadDatasetText('x', { format: 'nope' as 'spark' }), DatasetError);
  });
});

void describe('bounds and streaming', () => {
  void it('rejects empty and blank inputs with a clear error', async () => {
    await assert.rejects(
      loadDatasetText(''),
      (e: unknown) => e instanceof DatasetError && /empty/.test(e.message),
    );
    await assert.rejects(loadDatasetText('\n  \n\r\n'), DatasetError);
  });

  void it('skips oversized lines without holding them, across chunk boundaries', async () => {
    const big = JSON.stringify({ question: 'x'.repeat(5000), answer: '1' });
    const text = jsonl({ question: 'a', answer: '1' }, big, { question: 'ü €', answer: '2' }) + '\r\n';
    // feed the input as 7-byte chunks so lines and a multi-byte character straddle chunk edges
    const bytes = Buffer.from(text, 'utf8');
    const chunks: Buffer[] = [];
    for (let i = 0; i < bytes.length; i += 7) chunks.push(bytes.subarray(i, i + 7));
    const r = await loadDataset(chunks, { maxLineBytes: 200 });
    assert.deepEqual(
      r.records.map((x) => x.question),
      ['a', 'ü €'],
    );
    assert.equal(errorAt(r.errors, 2).code, 'too-long');
    assert.match(errorAt(r.errors, 2).message, /5\d{3} bytes \(limit 200\)/);
    const events = [];
    for await (const ev of readLines(['a\nb', 'c\r\n', '\nlast'])) events.push(ev);
    assert.deepEqual(events, [
      { line: 1, text: 'a' },
      { line: 2, text: 'bc' },
      { line: 3, text: '' },
      { line: 4, text: 'last' },
    ]);
  });

  void it('bounds records, kept errors and field lengths', async () => {
    const rows = Array.from({ length: 50 }, (_, i) => ({ question: `q${i}`, answer: String(i) }));
    const r = await loadDatasetText(jsonl(...rows), { maxRecords: 10 });
    assert.equal(r.records.length, 10);
    assert.equal(r.truncated, true);
    const bad = await loadDatasetText(jsonl(...Array.from({ length: 30 }, () => '{oops')), {
      maxErrors: 5,
      format: 'jsonl',
    });
    assert.equal(bad.errors.length, 5);
    assert.equal(bad.errorCount, 30);
    assert.equal(bad.records.length, 0);
    const long = await loadDatasetText(jsonl({ question: 'q'.repeat(100), answer: '1' }), {
      maxQuestionChars: 50,
    });
    assert.deepEqual([long.errors[0]?.code, long.errors[0]?.field], ['too-long', 'question']);
  });

  void it('loads files and reports unreadable paths', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'spark-ds-'));
    const file = join(dir, 'd.jsonl');
    writeFileSync(
      file,
      syntheticRecords({ seed: 1, split: 'test', count: 20 }).map(toSparkLine).join('\n') + '\n',
    );
    const r = await loadDatasetFile(file);
    assert.equal(r.records.length, 20);
    assert.equal(r.records[0]?.source, file);
    assert.equal(r.errorCount, 0);
    const gen = syntheticRecords({ seed: 1, split: 'test', count: 20 });
    assert.deepEqual(
      r.records.map((x) => [x.question, x.answer]),
      gen.map((x) => [x.question, x.answer]),
    );
    assert.equal(gen[0]?.dataset?.startsWith('syn-'), true);
    await assert.rejects(
      loadDatasetFile(join(dir, 'missing.jsonl')),
      (e: unknown) => e instanceof DatasetError && /ENOENT/.test(e.message),
    );
  });
});

void describe('boxed extractor', () => {
  void it('matches braces, takes first or last, ignores unterminated boxes', () => {
    assert.deepEqual(allBoxed('a \\boxed{1} b \\fbox{x{y}} c \\boxed{\\frac{a}{b}}'), [
      '1',
      'x{y}',
      '\\frac{a}{b}',
    ]);
    assert.equal(lastBoxed('\\boxed{2} and \\boxed{3'), '2');
    assert.equal(firstBoxed('nothing'), null);
    assert.equal(lastBoxed('\\boxed{\\}}'), '\\}');
    assert.equal(lastBoxed('\\boxed{}'), '');
    const huge = '\\boxed{1}'.repeat(20000) + '{'.repeat(100000);
    const t0 = performance.now();
    assert.equal(allBoxed(huge).length, 20000);
    assert.ok(performance.now() - t0 < 500, 'extraction is linear');
  });
});
