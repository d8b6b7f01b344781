// `pnpm bench:verifier --against DIR [--rounds N]`: this checkout's verifier side by side with the one in
// another checkout DIR (an older commit, say) on the same seeded items. Each side is measured in a process
// of its own (against-side.ts), the two started one after the other in every round and the order flipping
// each round, so that load on a shared machine hits both alike. Separate processes, not two verifiers in
// one: two instances of the very same code in one process measured 5–8 % apart on symbolic and junk
// items (the first-created one slower), which is as large as the differences this is meant to show.
// `--against .` compares this checkout with itself: the ratios it prints are the harness's own spread.
// Each side reports the median of three passes per workload.
// Prints verifications/s and p99 per workload and the ratio ours ÷ theirs (median and range over rounds).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Where the verifier lives in a checkout: today's package, or the layout before the packages split. */
const LAYOUTS = ['services/lib/verify/src/index.ts', 'services/verifier/src/index.ts'];

const HERE = dirname(fileURLToPath(import.meta.url));
const OURS = resolve(HERE, '../index.ts');
const SIDE = resolve(HERE, 'against-side.ts');
/** A side that has not answered in this long is stuck (a run takes seconds). */
const SIDE_TIMEOUT_MS = 600_000;

type SideRows = { name: string; perSecond: number; p99Ms: number }[];

/** The JSON line a side prints, checked field by field. */
function parseRows(line: string): SideRows {
  const v: unknown = JSON.parse(line);
  if (!Array.isArray(v)) throw new Error('not an array');
  return v.map((r: unknown) => {
    const o = r as Record<string, unknown> | null;
    if (typeof o?.name !== 'string' || typeof o.perSecond !== 'number' || typeof o.p99Ms !== 'number') {
      throw new Error(`malformed row ${JSON.stringify(r)}`);
    }
    return { name: o.name, perSecond: o.perSecond, p99Ms: o.p99Ms };
  });
}

/** Runs one side in a child process (the same Node flags as this one, so the same loader). */
function runSide(entry: string): Promise<SideRows> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, [...process.execArgv, SIDE, entry], {
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: SIDE_TIMEOUT_MS,
    });
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err = (err + d).slice(-4_000)));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (code !== 0) {
        reject(new Error(`side ${entry} exited with ${code ?? signal}: ${err.trim()}`));
        return;
      }
      const last = out.trim().split('\n').pop() ?? '';
      try {
        resolvePromise(parseRows(last));
      } catch (e) {
        reject(new Error(`side ${entry} printed no result (${e instanceof Error ? e.message : String(e)})`));
      }
    });
  });
}

export async function benchAgainst(dir: string, rounds: number): Promise<void> {
  const entry = LAYOUTS.map((p) => resolve(dir, p)).find((p) => existsSync(p));
  if (entry === undefined) throw new Error(`--against ${dir}: no verifier at ${LAYOUTS.join(' or ')}`);
  const ours: SideRows[] = [];
  const theirs: SideRows[] = [];
  const loadBefore = loadavg();
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      ours.push(await runSide(OURS));
      theirs.push(await runSide(entry));
    } else {
      theirs.push(await runSide(entry));
      ours.push(await runSide(OURS));
    }
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  const fmtLoad = (l: number[]): string => l.map((x) => x.toFixed(2)).join(' ');
  const out = [
    `verifier side by side: ours (this checkout) vs theirs (${dir}); ${rounds} rounds, each side in its own process, the order alternating; load average ${fmtLoad(loadBefore)} before, ${fmtLoad(loadavg())} after`,
    '',
    '| workload | ours /s | theirs /s | ratio (median) | ratio range | ours p99 ms | theirs p99 ms |',
    '| --- | ---: | ---: | ---: | --- | ---: | ---: |',
  ];
  for (const [i, row] of (ours[0] ?? []).entries()) {
    const a = ours.map((rows) => rows[i] ?? { perSecond: NaN, p99Ms: NaN });
    const b = theirs.map((rows) => rows[i] ?? { perSecond: NaN, p99Ms: NaN });
    const ratios = a.map((x, k) => x.perSecond / (b[k]?.perSecond ?? NaN));
    out.push(
      `| ${row.name} | ${median(a.map((x) => x.perSecond)).toFixed(0)} | ${median(b.map((x) => x.perSecond)).toFixed(0)} | ${median(ratios).toFixed(2)} | ${Math.min(...ratios).toFixed(2)}–${Math.max(...ratios).toFixed(2)} | ${median(a.map((x) => x.p99Ms)).toFixed(3)} | ${median(b.map((x) => x.p99Ms)).toFixed(3)} |`,
    );
  }
  console.log(out.join('\n'));
}
