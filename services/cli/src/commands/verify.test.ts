// `spark verify` end to end: runs the real CLI (node services/cli/bin/spark.mjs) as a subprocess on files
// and stdin, including the examples printed in docs/verifier.md.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../../', import.meta.url));
const bin = join(root, 'services/cli/bin/spark.mjs');
const dir = mkdtempSync(join(tmpdir(), 'spark-verify-'));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function spark(args: string[], stdin?: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    // A generous budget: these tests check the CLI contract on a shared machine, not speed.
    const child = spawn(process.execPath, [bin, 'verify', '--budget-ms', '3000', '--spares', '0', ...args], {
      cwd: root,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(stdin ?? '');
  });
}

function jsonLines(text: string): unknown[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as unknown);
}

void test('a file with good and bad lines: results in order, error records, exit 2', async () => {
  const file = join(dir, 'mixed.jsonl');
  const long = JSON.stringify({ answer: 'x'.repeat(500), label: '1' });
  writeFileSync(
    file,
    [
      JSON.stringify({ response: 'so $\\boxed{2\\sqrt{2}}$', label: '\\sqrt{8}' }),
      '{not json',
      JSON.stringify({ answer: '1,000', label: '1000' }),
      JSON.stringify({ response: 'no box', label: '3' }),
      '',
      JSON.stringify({ label: '3' }),
      long,
      JSON.stringify({ answer: '\\frac{1}{2}', label: '0.5' }),
    ].join('\n'),
  );
  const run = await spark(['--max-line-chars', '200', file]);
  assert.equal(run.code, 2, run.stderr);
  const out = jsonLines(run.stdout) as Record<string, unknown>[];
  assert.equal(out.length, 7, 'one record per non-blank line');
  assert.deepEqual(out[0], { reward: 1, extracted: '2\\sqrt{2}', reason: 'boxed:symbolic' });
  assert.match(String(out[1]?.['error']), /^line 2: invalid JSON/);
  assert.deepEqual(out[2], { reward: 1, extracted: '1,000', reason: 'given:normalized-string' });
  assert.deepEqual(out[3], { reward: 0, extracted: null, reason: 'no-answer' });
  assert.match(String(out[4]?.['error']), /^line 6: needs a "response" or an "answer"/);
  assert.match(String(out[5]?.['error']), /^line 7: longer than 200 characters/);
  assert.deepEqual(out[6], { reward: 1, extracted: '\\frac{1}{2}', reason: 'given:normalized-string' });
  assert.match(run.stderr, /3 of 7 lines were bad/);
});

void test('stdin input with options (--gsm8k, --judge): exit 0', async () => {
  const gsm = await spark(
    ['--gsm8k'],
    `${JSON.stringify({ response: 'work\n#### 1,250', label: '1250' })}\n`,
  );
  assert.equal(gsm.code, 0, gsm.stderr);
  assert.deepEqual(jsonLines(gsm.stdout), [
    { reward: 1, extracted: '1,250', reason: 'gsm8k:normalized-string' },
  ]);
  const judge = await spark(
    ['--judge', '-'],
    [
      JSON.stringify({ response: '\\boxed{Yes} then \\boxed{No}', label: 'Yes' }),
      JSON.stringify({ response: '\\boxed{yes}', label: 'Yes' }),
    ].join('\n'),
  );
  assert.equal(judge.code, 0, judge.stderr);
  assert.deepEqual(jsonLines(judge.stdout), [
    { reward: 1, extracted: 'Yes', reason: 'boxed:judge-label' },
    { reward: 0, extracted: 'yes', reason: 'boxed:judge-mismatch' },
  ]);
});

void test('--unboxed reads an answer stated without a box; off by default', async () => {
  const input = [
    JSON.stringify({ response: 'So the final answer is 7.78', label: '7.78' }),
    JSON.stringify({ response: 'We get $x=3$ and then $y = 7$', label: '7' }),
  ].join('\n');
  const on = await spark(['--unboxed'], input);
  assert.equal(on.code, 0, on.stderr);
  assert.deepEqual(jsonLines(on.stdout), [
    { reward: 1, extracted: '7.78', reason: 'unboxed:exact' },
    { reward: 1, extracted: 'y = 7', reason: 'unboxed:normalized-string' },
  ]);
  const off = await spark([], input);
  assert.equal(off.code, 0, off.stderr);
  assert.deepEqual(jsonLines(off.stdout), [
    { reward: 0, extracted: null, reason: 'no-answer' },
    { reward: 0, extracted: null, reason: 'no-answer' },
  ]);
});

void test('a missing file or a bad option: exit 1 with a clear message', async () => {
  const run = await spark([join(dir, 'does-not-exist.jsonl')]);
  assert.equal(run.code, 1);
  assert.match(run.stderr, /cannot read .*does-not-exist\.jsonl: no such file/);
  assert.equal(run.stdout, '');
  const bad = await spark(['--max-line-chars', 'lots', join(dir, 'does-not-exist.jsonl')]);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--max-line-chars must be a positive integer/);
});

void test('the examples in docs/verifier.md produce the outputs printed there', async () => {
  const doc = readFileSync(join(root, 'docs/verifier.md'), 'utf8');
  const blocks = [...doc.matchAll(/```jsonl (verify-input|verify-output)\n([\s\S]*?)```/g)];
  const inputs = blocks.filter((b) => b[1] === 'verify-input').map((b) => b[2] ?? '');
  const outputs = blocks.filter((b) => b[1] === 'verify-output').map((b) => b[2] ?? '');
  assert.ok(inputs.length >= 1 && inputs.length === outputs.length, 'docs have paired example blocks');
  for (let i = 0; i < inputs.length; i++) {
    const file = join(dir, `doc-${i}.jsonl`);
    writeFileSync(file, inputs[i] ?? '');
    const run = await spark([file]);
    assert.ok(run.code === 0 || run.code === 2, run.stderr);
    assert.deepEqual(jsonLines(run.stdout), jsonLines(outputs[i] ?? ''), `docs example ${i + 1}`);
  }
});
