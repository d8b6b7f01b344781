// Before/after on the adversarial set, interleaved in one process so both builds see the same machine
// load: `node --import tsx src/bench/adversarial-ab.ts --old DIR [--rounds 4] [--json FILE]`, where DIR
// is the @spark/verify folder of another checkout (for example a `git worktree` of an older commit, with
// node_modules linked to this one's). Each round builds a fresh verifier per build (budget 50 ms, 1
// worker, 2 spares), waits until it is warm, runs 100 symbolic calls, then times (a) the benchmark's
// adversarial set and (b) a flood: 6 engine-hanging calls in a row, then one simple symbolic call. The
// builds alternate which goes first. Charged time and waits are only known for a build that reports them.
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import type { VerifierOptions } from '../index.js';
import {
  adversarialItems,
  measure,
  symbolicItem,
  type Item,
  type Row,
  type VerifierLike,
} from './workloads.js';

interface Build {
  readonly name: string;
  readonly make: (o: VerifierOptions) => VerifierLike & {
    ready(): Promise<void>;
    close(): Promise<void>;
    readonly terminations: number;
  };
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

async function load(name: string, url: string): Promise<Build> {
  const mod = (await import(url)) as { Verifier: new (o: VerifierOptions) => ReturnType<Build['make']> };
  return { name, make: (o) => new mod.Verifier(o) };
}

const FLOOD: Item[] = [
  ...Array.from({ length: 6 }, (_, i) => ({
    response: `$\\boxed{\\prod_{k=1}^{100000} k}$`,
    label: String(i + 1),
  })),
  { response: '$\\boxed{(x+1)^2}$', label: 'x^2+2x+1' },
];

async function main(): Promise<void> {
  const oldDir = arg('--old');
  if (oldDir === undefined) throw new Error('usage: adversarial-ab.ts --old DIR [--rounds N] [--json FILE]');
  const rounds = Number(arg('--rounds') ?? '4');
  const builds = [
    await load('before', pathToFileURL(join(resolve(oldDir), 'src/index.ts')).href),
    await load('after', new URL('../index.ts', import.meta.url).href),
  ];
  const warm = Array.from({ length: 100 }, () => symbolicItem());
  const results: {
    round: number;
    build: string;
    set: string;
    row: Row;
    terminations: number;
    lastReason?: string;
  }[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? builds : [...builds].reverse();
    for (const b of order) {
      const v = b.make({ budgetMs: 50, workers: 1, spares: 2 });
      try {
        await v.ready();
        await measure(v, 'warm-up', warm);
        let t = v.terminations;
        const adv = await measure(v, 'adversarial', adversarialItems());
        results.push({
          round,
          build: b.name,
          set: 'adversarial',
          row: adv,
          terminations: v.terminations - t,
        });
        await v.ready();
        t = v.terminations;
        const flood = await measure(v, 'flood', FLOOD.slice(0, -1));
        const last = FLOOD[FLOOD.length - 1] as Item;
        const s = performance.now();
        const r = await v.verify(last.response, last.label, { timing: true });
        const wall = performance.now() - s;
        results.push({
          round,
          build: b.name,
          set: 'flood, then simple',
          row: {
            ...flood,
            maxMs: Math.max(flood.maxMs, wall),
            waitTotalMs: flood.waitTotalMs + (r.waitMs ?? NaN),
            maxWaitMs: Math.max(flood.maxWaitMs, r.waitMs ?? NaN),
          },
          terminations: v.terminations - t,
          lastReason: `${r.reason} after ${wall.toFixed(0)} ms`,
        });
      } finally {
        await v.close();
      }
    }
  }
  const f = (x: number, d = 1): string => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
  const out = [
    `adversarial before/after, interleaved (node ${process.version}, load average ${loadavg()
      .map((x) => x.toFixed(2))
      .join(' ')} at the end; budget 50 ms, 1 worker + 2 spares)`,
    '',
    '| round | build | set | terminations | max wall ms | max charged ms | wait total ms | time-outs | last call |',
    '| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |',
    ...results.map(
      (x) =>
        `| ${x.round + 1} | ${x.build} | ${x.set} | ${x.terminations} | ${f(x.row.maxMs)} | ${f(x.row.maxChargedMs)} | ${f(x.row.waitTotalMs)} | ${x.row.timeouts} | ${x.lastReason ?? ''} |`,
    ),
  ];
  console.log(out.join('\n'));
  const jsonPath = arg('--json');
  if (jsonPath) writeFileSync(jsonPath, `${JSON.stringify({ loadavg: loadavg(), results }, null, 2)}\n`);
}

await main();
