// `pnpm bench:verifier --against DIR [--rounds N]`: this checkout's verifier side by side with the one in
// another checkout DIR (an older commit, say), in one process on the same seeded items, the two measured in
// alternating rounds (the order flipping each round) so that load on a shared machine hits both alike.
// Prints verifications/s and p99 per workload and the ratio ours ÷ theirs (median and range over rounds).
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { DEFAULT_SPARES, Verifier } from '../index.js';
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

/** Where the verifier lives in a checkout: today's package, or the layout before the packages split. */
const LAYOUTS = ['services/lib/verify/src/index.ts', 'services/verifier/src/index.ts'];

export async function benchAgainst(dir: string, rounds: number): Promise<void> {
  const entry = LAYOUTS.map((p) => resolve(dir, p)).find((p) => existsSync(p));
  if (entry === undefined) throw new Error(`--against ${dir}: no verifier at ${LAYOUTS.join(' or ')}`);
  const mod = (await import(pathToFileURL(entry).href)) as {
    Verifier?: new (o: object) => Closable;
  };
  if (typeof mod.Verifier !== 'function') throw new Error(`--against ${dir}: ${entry} exports no Verifier`);
  const opts = { budgetMs: 50, workers: 1, spares: DEFAULT_SPARES };
  const ours: Closable = new Verifier(opts);
  const theirs = new mod.Verifier(opts);
  await Promise.all([ours.ready(), theirs.ready()]);
  const warm = [...Array.from({ length: 2_000 }, numericItem), ...Array.from({ length: 100 }, symbolicItem)];
  await measure(ours, 'warm-up', warm);
  await measure(theirs, 'warm-up', warm);
  const workloads: [string, Item[]][] = [
    ['numeric', Array.from({ length: 20_000 }, numericItem)],
    ['symbolic', Array.from({ length: 1_000 }, symbolicItem)],
    ['junk', Array.from({ length: 2_000 }, junkItem)],
    [
      'mix 70/20/10',
      Array.from({ length: 10_000 }, () => {
        const u = rand();
        return u < 0.7 ? numericItem() : u < 0.9 ? symbolicItem() : junkItem();
      }),
    ],
  ];
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const out = [
    `verifier side by side: ours (this checkout) vs theirs (${dir}); ${rounds} alternating rounds; load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')}`,
    '',
    '| workload | ours /s | theirs /s | ratio (median) | ratio range | ours p99 ms | theirs p99 ms |',
    '| --- | ---: | ---: | ---: | --- | ---: | ---: |',
  ];
  for (const [name, items] of workloads) {
    const a: { perSecond: number; p99Ms: number }[] = [];
    const b: { perSecond: number; p99Ms: number }[] = [];
    for (let r = 0; r < rounds; r++) {
      if (r % 2 === 0) {
        a.push(await measure(ours, name, items));
        b.push(await measure(theirs, name, items));
      } else {
        b.push(await measure(theirs, name, items));
        a.push(await measure(ours, name, items));
      }
    }
    const ratios = a.map((x, i) => x.perSecond / (b[i]?.perSecond ?? NaN));
    out.push(
      `| ${name} | ${median(a.map((x) => x.perSecond)).toFixed(0)} | ${median(b.map((x) => x.perSecond)).toFixed(0)} | ${median(ratios).toFixed(2)} | ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)} | ${median(a.map((x) => x.p99Ms)).toFixed(3)} | ${median(b.map((x) => x.p99Ms)).toFixed(3)} |`,
    );
  }
  console.log(out.join('\n'));
  await Promise.all([ours.close(), theirs.close()]);
}
