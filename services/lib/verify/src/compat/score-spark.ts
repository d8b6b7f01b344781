// Scores the differential corpus (compat/corpus.jsonl) with Spark's verifier: one `{"reward", "reason"}` line per
// corpus line, in order, on stdout. differential.py runs this and compares the rewards with Math-Verify's.
// `--lib MODULE` scores with another build of the library (e.g. a checkout of main's verifier) instead.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import type { ItemOptions, Verifier as VerifierClass } from '../index.js';

interface Row {
  readonly pred: string;
  readonly gold: string;
  readonly opts?: ItemOptions;
}

const args = process.argv.slice(2);
const libAt = args.indexOf('--lib');
const corpusFile =
  args.find((a, i) => !a.startsWith('--') && (libAt < 0 || i !== libAt + 1)) ?? 'compat/corpus.jsonl';
const lib = (
  libAt >= 0 && args[libAt + 1] !== undefined
    ? await import(pathToFileURL(resolve(args[libAt + 1] ?? '')).href)
    : await import('../index.js')
) as { Verifier: typeof VerifierClass };

const rows = readFileSync(corpusFile, 'utf8')
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => JSON.parse(l) as Row);
// A generous budget: the comparison is about rules, not speed.
const verifier = new lib.Verifier({ budgetMs: 5_000, spares: 0 });
try {
  await verifier.ready();
  for (const row of rows) {
    const r = await verifier.verify(row.pred, row.gold, row.opts ?? {});
    process.stdout.write(`${JSON.stringify({ reward: r.reward, reason: r.reason })}\n`);
  }
} finally {
  await verifier.close();
}
