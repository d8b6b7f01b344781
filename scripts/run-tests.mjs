// The test runner: finds every `*.test.ts` below the workspace's source folders, hands node:test the
// explicit file list (Node 20's --test takes no globs and would silently run nothing), streams the TAP
// report, and ends with one `N passed, N failed, N cancelled, N skipped` line. Exits non-zero on any failure or when no test ran.
//
//   node scripts/run-tests.mjs [path-filter ...]     e.g. `pnpm test:unit services/lib`
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const searchRoots = ['services', 'kernels', 'test'];
const skipDirs = new Set(['node_modules', 'target', 'dist', '.git', 'gen']);
const perTestTimeoutMs = Number(process.env.SPARK_TEST_TIMEOUT_MS ?? 300_000);

function walk(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of entries) {
    if (skipDirs.has(name)) continue;
    const full = join(dir, name);
    const st = statSync(full);
    if (st.isDirectory()) walk(full, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, full));
  }
}

const files = [];
for (const r of searchRoots) walk(join(root, r), files);
files.sort();
const filters = process.argv.slice(2);
const selected = filters.length ? files.filter((f) => filters.some((p) => f.includes(p))) : files;
if (selected.length === 0) {
  console.error(
    `run-tests: no test files matched (${filters.join(' ') || 'all'}); refusing to report success.`,
  );
  process.exit(1);
}
console.error(`run-tests: ${selected.length} test files`);

const child = spawn(
  process.execPath,
  [
    '--import',
    'tsx',
    '--test',
    '--test-reporter=tap',
    '--test-reporter-destination=stdout',
    `--test-timeout=${perTestTimeoutMs}`,
    ...selected,
  ],
  { cwd: root, stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, SPARK_TEST: '1' } },
);

let pass = 0;
let fail = 0;
let skipped = 0;
let cancelled = 0;
let buf = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  buf += chunk.toString('utf8');
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl);
    buf = buf.slice(nl + 1);
    let m;
    if ((m = /^# pass (\d+)$/.exec(line))) pass = Number(m[1]);
    else if ((m = /^# fail (\d+)$/.exec(line))) fail = Number(m[1]);
    else if ((m = /^# skipped (\d+)$/.exec(line))) skipped = Number(m[1]);
    else if ((m = /^# cancelled (\d+)$/.exec(line))) cancelled = Number(m[1]);
  }
});
child.on('close', (code) => {
  // cancelled: tests that never ran to the end (a failed before() hook, a file time-out): failures too
  console.log(`${pass} passed, ${fail} failed, ${cancelled} cancelled, ${skipped} skipped`);
  if (pass + fail + cancelled === 0) {
    console.error('run-tests: zero tests ran; failing.');
    process.exit(1);
  }
  process.exit(fail > 0 || cancelled > 0 || code !== 0 ? 1 : 0);
});
