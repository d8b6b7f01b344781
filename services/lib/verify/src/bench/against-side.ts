// One side of `bench:verifier --against` (against.ts): loads the verifier at the path given (this
// checkout's or another's), warms it up, measures the workloads on items from the fixed seed (the same
// items on both sides), prints one JSON line of rows and exits.
import { pathToFileURL } from 'node:url';

import { DEFAULT_SPARES } from '../index.js';
import {
  junkItem,
  measure,
  numericItem,
  rand,
  symbolicItem,
  type Item,
  type VerifierLike,
} from './workloads.js';

interface Closable extends VerifierLike {
  ready(): Promise<void>;
  close(): Promise<void>;
}

const entry = process.argv[2];
if (entry === undefined) throw new Error('usage: against-side.ts VERIFIER_INDEX_TS');
const mod = (await import(pathToFileURL(entry).href)) as { Verifier?: new (o: object) => Closable };
if (typeof mod.Verifier !== 'function') throw new Error(`${entry} exports no Verifier`);
const v = new mod.Verifier({ budgetMs: 50, workers: 1, spares: DEFAULT_SPARES });
await v.ready();
await measure(v, 'warm-up', [
  ...Array.from({ length: 2_000 }, numericItem),
  ...Array.from({ length: 100 }, () => symbolicItem()),
]);
// Each workload three times, the median pass reported: one pass of the symbolic set is half a second, short
// enough for a burst of other work on the machine to move it by a third. Every pass has items of its own
// (the same on both sides: one seeded sequence), so a cache in the verifier gains only from repeats within
// a pass, as it would in a job.
const workloads: [string, () => Item[]][] = [
  ['numeric', () => Array.from({ length: 20_000 }, numericItem)],
  ['symbolic', () => Array.from({ length: 1_000 }, () => symbolicItem())],
  ['symbolic, no repeats', () => Array.from({ length: 1_000 }, () => symbolicItem(999))],
  ['junk', () => Array.from({ length: 2_000 }, junkItem)],
  [
    'mix 70/20/10',
    () =>
      Array.from({ length: 10_000 }, () => {
        const u = rand();
        return u < 0.7 ? numericItem() : u < 0.9 ? symbolicItem() : junkItem();
      }),
  ],
];
const PASSES = 3;
const rows: { name: string; perSecond: number; p99Ms: number }[] = [];
for (const [name, make] of workloads) {
  const passes = [];
  for (let p = 0; p < PASSES; p++) passes.push(await measure(v, name, make()));
  passes.sort((a, b) => a.perSecond - b.perSecond);
  const mid = passes[Math.floor(PASSES / 2)] as (typeof passes)[number];
  rows.push({ name, perSecond: mid.perSecond, p99Ms: mid.p99Ms });
}
await v.close();
console.log(JSON.stringify(rows));
