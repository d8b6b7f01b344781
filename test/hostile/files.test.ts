// Hostile files: property tests of the dataset loader (random JSONL lines: valid records of every format,
// arbitrary JSON, broken JSON, blank/CRLF/BOM lines, invalid UTF-8, over-long lines and fields, split into
// chunks anywhere) and of Hugging Face tokenizer loading (the tiny BPE fixture with parts replaced or
// removed, truncated file text, arbitrary JSON). Each input either loads, with every bound holding, or fails
// with the module's own error (DatasetError / TokenizerError); nothing else is thrown.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import fc from 'fast-check';

import { DatasetError, loadDataset, type LoadResult } from '@spark/method/datasets';
import { HfTokenizer, MAX_TOKEN_ID, TokenizerError } from '@spark/method/tokenizers';

const RUNS = Number(process.env.SPARK_FUZZ_RUNS ?? 200);
const SEED = Number(process.env.SPARK_FUZZ_SEED ?? 20261206);
const LIMITS = { maxLineBytes: 2_048, maxQuestionChars: 300, maxAnswerChars: 40, maxErrors: 5 };

const text = fc.string({ unit: 'grapheme', maxLength: 60 });
const validRecord = fc.oneof(
  fc.record({ question: text, answer: text }),
  fc.record({ question: text, answer: text.map((a) => `work #### ${a}`) }),
  fc.record({ problem: text, solution: text.map((s) => `so \\boxed{${s}}`) }),
  fc.record({ dataset: text, problem: text, answer: text, image_path: fc.constantFrom('', 'a.png') }),
  fc.record({
    message: fc.array(fc.record({ role: fc.constantFrom('system', 'user', 'x'), content: text }), {
      maxLength: 3,
    }),
    answer: text,
  }),
);
/** One line of a hostile JSONL file, as bytes. */
const hostileLine: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 4, arbitrary: validRecord.map((r) => Buffer.from(JSON.stringify(r))) },
  {
    weight: 2,
    arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => Buffer.from(JSON.stringify(v) ?? 'null')),
  },
  { weight: 1, arbitrary: validRecord.chain((r) => fc.nat().map((n) => cut(JSON.stringify(r), n))) },
  { weight: 1, arbitrary: fc.string({ maxLength: 80 }).map((s) => Buffer.from(s)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 80 }).map((u) => u.map((b) => (b === 10 ? 32 : b))) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom('', '   ', '\r', '\ufeff{"question":"q","answer":"a"}')
      .map((s) => Buffer.from(s)),
  },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: 100, max: 3_000 })
      .map((n) => Buffer.from(JSON.stringify({ question: 'q'.repeat(n), answer: 'a'.repeat(n / 20) }))),
  },
);
const cut = (s: string, n: number): Buffer => Buffer.from(s.slice(0, n % (s.length + 1)));

/** The file's bytes split into chunks at arbitrary points. */
function chunked(bytes: Uint8Array, cuts: number[]): Uint8Array[] {
  const at = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of [...at, bytes.length]) {
    out.push(bytes.slice(prev, c));
    prev = c;
  }
  return out;
}

async function load(chunks: Uint8Array[]): Promise<LoadResult | DatasetError> {
  try {
    return await loadDataset(chunks, { ...LIMITS, source: 'hostile' });
  } catch (err) {
    assert.ok(err instanceof DatasetError, `not a DatasetError: ${String(err)}`);
    assert.ok(err.message.length > 0 && err.message.length < 2_000);
    return err;
  }
}

describe('hostile dataset lines', () => {
  it('load or refuse with DatasetError; bounds hold; the chunking does not matter', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(hostileLine, { minLength: 0, maxLength: 20 }),
        fc.constantFrom('\n', '\r\n'),
        fc.array(fc.nat(), { maxLength: 6 }),
        async (lines, eol, cuts) => {
          const bytes = Buffer.concat(lines.flatMap((l) => [Buffer.from(l), Buffer.from(eol)]));
          const whole = await load([bytes]);
          const split = await load(chunked(bytes, cuts));
          if (whole instanceof DatasetError) {
            assert.ok(split instanceof DatasetError, 'same verdict in chunks');
            assert.equal(split.message, whole.message);
            return;
          }
          assert.ok(
            !(split instanceof DatasetError),
            `chunked: ${split instanceof DatasetError ? split.message : ''}`,
          );
          assert.deepEqual(split, whole, 'same result however the bytes are chunked');
          assert.ok(whole.errors.length <= LIMITS.maxErrors);
          assert.ok(whole.errorCount >= whole.errors.length);
          assert.ok(whole.records.length + whole.errorCount <= whole.lines, 'each line one record or error');
          for (const r of whole.records) {
            assert.ok(r.question.length <= LIMITS.maxQuestionChars, `question of ${r.question.length}`);
            assert.ok(r.answer.length <= LIMITS.maxAnswerChars, `answer of ${r.answer.length}`);
            assert.ok(r.question.trim().length > 0, 'a record has a question');
          }
          for (const e of whole.errors) assert.ok(e.message.length < 2_000 && e.line >= 1);
        },
      ),
      { numRuns: RUNS, seed: SEED },
    );
  });
});

const fixtureDir = fileURLToPath(
  new URL('../../services/lib/method/src/tokenizers/fixtures/tiny-bpe/', import.meta.url),
);
const fixtureJson: unknown = JSON.parse(readFileSync(join(fixtureDir, 'tokenizer.json'), 'utf8'));
const fixtureConfig: unknown = JSON.parse(readFileSync(join(fixtureDir, 'tokenizer_config.json'), 'utf8'));

type Path = (string | number)[];
function pathsOf(v: unknown, prefix: Path = [], out: Path[] = []): Path[] {
  if (out.length > 5_000) return out;
  out.push(prefix);
  if (Array.isArray(v)) v.slice(0, 40).forEach((x, i) => pathsOf(x, [...prefix, i], out));
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v).slice(0, 60)) pathsOf(x, [...prefix, k], out);
  return out;
}
/** `v` with the value at `path` replaced (or removed when `by` is undefined). */
function replaced(v: unknown, path: Path, by: unknown): unknown {
  if (path.length === 0) return by;
  const copy: unknown = structuredClone(v);
  let at = copy as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
  const last = path[path.length - 1] as string | number;
  if (by === undefined) {
    if (Array.isArray(at)) at.splice(last as number, 1);
    else delete at[last];
  } else at[last] = by;
  return copy;
}
const jsonPaths = pathsOf(fixtureJson);
const configPaths = pathsOf(fixtureConfig);
const replacement = fc.oneof(
  fc.constant(undefined),
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(null, -1, 1e9, 2 ** 53, '', 'BPE', 'WordPiece', 'Unigram', [], {}, '<|im_end|>'),
);
const mutated = (base: unknown, paths: Path[]): fc.Arbitrary<unknown> =>
  fc
    .array(fc.tuple(fc.nat({ max: paths.length - 1 }), replacement), { minLength: 1, maxLength: 3 })
    .map((edits) => {
      let v = base;
      for (const [i, by] of edits) {
        try {
          v = replaced(v, paths[i] as Path, by);
        } catch {
          // an earlier edit removed the path: leave it
        }
      }
      return v;
    });

/** Loading and one encode/decode must take well under this, even on a loaded machine. */
const TOKENIZER_BOUND_MS = 5_000;

function checkTokenizer(build: () => HfTokenizer, probe: string): void {
  const started = performance.now();
  try {
    checkTokenizerOnce(build, probe);
  } finally {
    const ms = performance.now() - started;
    assert.ok(ms < TOKENIZER_BOUND_MS, `loading and using the tokenizer took ${Math.round(ms)} ms`);
  }
}

function checkTokenizerOnce(build: () => HfTokenizer, probe: string): void {
  let tok: HfTokenizer;
  try {
    tok = build();
  } catch (err) {
    assert.ok(err instanceof TokenizerError, `not a TokenizerError: ${String(err)}`);
    return;
  }
  assert.ok(Number.isInteger(tok.vocabSize) && tok.vocabSize > 0, `vocabSize ${tok.vocabSize}`);
  assert.ok(tok.eosId >= 0 && tok.eosId < tok.vocabSize, `eos ${tok.eosId}`);
  try {
    const ids = tok.encode(probe);
    for (const id of ids) assert.ok(Number.isInteger(id) && id >= 0 && id < tok.vocabSize, `id ${id}`);
    assert.equal(typeof tok.decode(ids), 'string');
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    assert.ok(err instanceof TokenizerError, `encode/decode threw a ${String(err)}`);
  }
}

describe('hostile tokenizer files', () => {
  it('the fixture with parts replaced or removed loads, with ids in range, or fails with TokenizerError', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.tuple(mutated(fixtureJson, jsonPaths), fc.constant(fixtureConfig)),
          fc.tuple(fc.constant(fixtureJson), mutated(fixtureConfig, configPaths)),
          fc.tuple(fc.jsonValue({ maxDepth: 3 }), fc.jsonValue({ maxDepth: 2 })),
        ),
        fc.string({ unit: 'grapheme', maxLength: 40 }),
        ([json, config], probe) => checkTokenizer(() => new HfTokenizer(json, config, 'hostile'), probe),
      ),
      { numRuns: RUNS, seed: SEED },
    );
  });

  // Regression: tokenizers.js builds dense tables up to the largest id, so one id of 10^9 took minutes (found
  // by the property above); ids beyond MAX_TOKEN_ID are now refused before it runs.
  it('a huge or non-integer token id is refused at once with TokenizerError naming it', () => {
    const cases: [string, (j: Record<string, unknown>) => void][] = [
      ['added_tokens[0].id', (j) => ((j.added_tokens as Record<string, unknown>[])[0]!.id = 1e9)],
      ['model.vocab', (j) => ((j.model as { vocab: Record<string, unknown> }).vocab.a = 2 ** 53)],
      ['model.vocab', (j) => ((j.model as { vocab: Record<string, unknown> }).vocab.a = 1.5)],
      ['added_tokens[1].id', (j) => ((j.added_tokens as Record<string, unknown>[])[1]!.id = -1)],
    ];
    for (const [where, edit] of cases) {
      const json = structuredClone(fixtureJson) as Record<string, unknown>;
      edit(json);
      const started = performance.now();
      assert.throws(
        () => new HfTokenizer(json, fixtureConfig, 'hostile'),
        (err: unknown) => err instanceof TokenizerError && err.message.includes(where),
      );
      assert.ok(performance.now() - started < 1_000);
    }
    assert.ok(MAX_TOKEN_ID >= 150_000, 'real vocabularies (Qwen2: 151,646 ids) still load');
  });

  it('truncated or corrupted tokenizer files on disk fail with TokenizerError', async () => {
    const raw = readFileSync(join(fixtureDir, 'tokenizer.json'));
    const dir = mkdtempSync(join(tmpdir(), 'spark-hostile-tok-'));
    writeFileSync(
      join(dir, 'tokenizer_config.json'),
      readFileSync(join(fixtureDir, 'tokenizer_config.json')),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.nat({ max: raw.length - 1 }).map((n) => raw.subarray(0, n)),
          fc.tuple(fc.nat({ max: raw.length - 1 }), fc.integer({ min: 0, max: 255 })).map(([at, b]) => {
            const out = Buffer.from(raw);
            out[at] = b;
            return out;
          }),
        ),
        async (bytes) => {
          writeFileSync(join(dir, 'tokenizer.json'), bytes);
          try {
            const tok = await HfTokenizer.fromDirectory(dir);
            assert.ok(tok.vocabSize > 0);
          } catch (err) {
            assert.ok(err instanceof TokenizerError, `not a TokenizerError: ${String(err)}`);
          }
        },
      ),
      { numRuns: Math.min(RUNS, 100), seed: SEED },
    );
  });
});
