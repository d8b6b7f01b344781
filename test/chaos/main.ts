// `npm run chaos -- [--kills N] [--seed S] [--json FILE] [--bound-min M] [--learner-ranks R]`: the chaos run
// (test/chaos/chaos.ts) with N kills (default 50) from seed S (default 1) and an R-rank learner group
// (default 1); prints the table, writes it as JSON with --json, and exits non-zero when an invariant fails
// or the run took longer than the bound (default 15 min).
import { writeFileSync } from 'node:fs';

import { runChaos, table } from './chaos.js';

const args = process.argv.slice(2);
function opt(name: string, fallback: number): number {
  const i = args.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(args[i + 1]);
  if (!Number.isInteger(v) || v < 0) {
    process.stderr.write(`chaos: ${name} needs a non-negative integer (got ${args[i + 1] ?? 'nothing'})\n`);
    process.exit(2);
  }
  return v;
}
const known = new Set(['--kills', '--seed', '--json', '--bound-min', '--learner-ranks']);
for (let i = 0; i < args.length; i += 2)
  if (!known.has(args[i] as string)) {
    process.stderr.write(`chaos: unknown option ${args[i]} (known: ${[...known].join(', ')})\n`);
    process.exit(2);
  }
const kills = opt('--kills', 50);
if (kills < 1 || kills > 500) {
  process.stderr.write(`chaos: --kills must be 1…500 (got ${kills})\n`);
  process.exit(2);
}
const seed = opt('--seed', 1);
const boundMin = opt('--bound-min', 15);
const learnerRanks = opt('--learner-ranks', 1);
if (learnerRanks < 1 || learnerRanks > 8) {
  process.stderr.write(`chaos: --learner-ranks must be 1…8 (got ${learnerRanks})\n`);
  process.exit(2);
}
const jsonOut = args.includes('--json') ? args[args.indexOf('--json') + 1] : undefined;

process.stdout.write(
  `chaos: ${kills} kills, seed ${seed}, ${learnerRanks} learner rank(s), bound ${boundMin} min\n`,
);
try {
  const report = await runChaos({
    kills,
    seed,
    boundMs: boundMin * 60_000,
    learnerRanks,
    log: (l) => process.stdout.write(`${l}\n`),
  });
  process.stdout.write(`${table(report)}\n`);
  if (jsonOut) writeFileSync(jsonOut, `${JSON.stringify(report, null, 2)}\n`);
  process.exit(report.violations.length ? 1 : 0);
} catch (err) {
  process.stderr.write(`chaos: FAILED: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
}
