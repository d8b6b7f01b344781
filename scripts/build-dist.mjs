#!/usr/bin/env node
// Builds the runnable JavaScript tree of the runtime packages (what the container images run): plain `node`,
// no tsx, no TypeScript sources, no tests, benchmarks or fixtures. The development path is untouched: the
// workspace's package.json files keep exporting the .ts sources that tests and `npm run spark` run with tsx.
//
//   node scripts/build-dist.mjs --out DIR [--only coordinator,cli,…]
//
// What it does, for the selected packages (default: the five services and the CLI) and their workspace
// dependencies (the closure of `workspace:` entries in `dependencies`):
//   1. compiles their sources with tsc (the repository's compiler settings, type-checked, emit on no error)
//      into DIR with the repository's layout: services/<name>/src/**.js, services/lib/<name>/src/**.js,
//      kernels/ts/**.js (test files, benchmarks and the test kit are not emitted unless runtime code
//      imports them);
//   2. writes each package's package.json with its `exports` and `bin` pointing at the .js files, no
//      scripts, no devDependencies and no tsx;
//   3. replaces the two tsx bootstraps (the CLI's bin/spark.mjs, the verifier pool's worker entry) with
//      plain-JS ones, copies proto/*.proto (read at run time by the gRPC reflection) and the native addon;
//   4. links each package's node_modules: workspace dependencies to their compiled package in DIR, third-party
//      ones to DIR/node_modules/.pnpm/<id>/…, the closure of the pnpm store entries they need, copied there
//      (with the store's own relative links between entries), so DIR is self-contained and relocatable;
//   5. refuses the tree if any emitted module still imports tsx or a .ts file.
// Needs the workspace installed (pnpm install; the native addon built for the kernels package to be usable).
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  lstatSync,
  statSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { parseArgs } from 'node:util';

const ROOT = resolve(import.meta.dirname, '..');

/** The packages an image may run, by short name → directory. */
export const PACKAGES = {
  coordinator: 'services/coordinator',
  rollout: 'services/rollout',
  verifier: 'services/verifier',
  'reward-synthesis': 'services/reward-synthesis',
  learner: 'services/learner',
  cli: 'services/cli',
  runtime: 'services/lib/runtime',
  protocol: 'services/lib/protocol',
  contract: 'services/lib/contract',
  method: 'services/lib/method',
  verify: 'services/lib/verify',
  kernels: 'kernels',
};
const DEFAULT_ONLY = ['coordinator', 'rollout', 'verifier', 'reward-synthesis', 'learner', 'cli'];
/** Dependencies the compiled tree does not need (the sources' TypeScript loader). */
const DROPPED_DEPS = new Set(['tsx']);

function fail(msg) {
  process.stderr.write(`build-dist: ${msg}\n`);
  process.exit(1);
}

function readJson(file) {
  return JSON.parse(readFileSync(file, 'utf8'));
}

const byName = new Map(
  Object.entries(PACKAGES).map(([short, dir]) => [
    readJson(join(ROOT, dir, 'package.json')).name,
    { short, dir },
  ]),
);

/** The selected packages and every workspace package they depend on. */
function closure(only) {
  const out = new Set();
  const visit = (short) => {
    if (out.has(short)) return;
    const dir = PACKAGES[short];
    if (!dir) fail(`unknown package "${short}" (one of: ${Object.keys(PACKAGES).join(', ')})`);
    out.add(short);
    const pkg = readJson(join(ROOT, dir, 'package.json'));
    for (const [name, range] of Object.entries(pkg.dependencies ?? {})) {
      if (!String(range).startsWith('workspace:')) continue;
      const dep = byName.get(name);
      if (!dep) fail(`${pkg.name} depends on ${name}, which is not a runtime package`);
      visit(dep.short);
    }
  };
  for (const s of only) visit(s);
  return [...out].sort();
}

/** Source roots of a package (what tsc is seeded with). */
function sourceGlobs(dir) {
  return dir === 'kernels' ? [`${dir}/ts/**/*.ts`] : [`${dir}/src/**/*.ts`];
}

function compile(out, shorts) {
  const buildDir = join(out, '.build');
  mkdirSync(buildDir, { recursive: true });
  const tsconfig = {
    extends: join(ROOT, 'tsconfig.base.json'),
    compilerOptions: {
      rootDir: ROOT,
      outDir: out,
      // Type libraries from the workspace, not from beside this temporary tsconfig.
      typeRoots: [join(ROOT, 'node_modules', '@types')],
      composite: false,
      incremental: false,
      declaration: false,
      emitDeclarationOnly: false,
      noEmit: false,
      noEmitOnError: true,
      sourceMap: false,
      removeComments: false,
      // An import of a sibling with a .ts extension would fail at run time; none may remain (checked below).
      rewriteRelativeImportExtensions: true,
    },
    include: shorts.flatMap((s) => sourceGlobs(PACKAGES[s])).map((g) => join(ROOT, g)),
    exclude: [
      '**/node_modules/**',
      '**/*.test.ts',
      '**/*.check.ts',
      '**/bench/**',
      '**/bench-*.ts',
      '**/fixtures/**',
      '**/test/**',
      '**/compat/**',
      '**/testing/**',
      '**/testing.ts',
      '**/gen/**/*.test.ts',
    ].map((g) => join(ROOT, g)),
  };
  writeFileSync(join(buildDir, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2));
  const tsc = createRequire(join(ROOT, 'package.json')).resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(buildDir, 'tsconfig.json')], { stdio: 'inherit' });
  rmSync(buildDir, { recursive: true, force: true });
  if (r.status !== 0) fail(`tsc failed (status ${r.status})`);
}

const toJs = (target) => target.replace(/\.ts$/, '.js');

function mapExports(exp) {
  if (typeof exp === 'string') return toJs(exp);
  if (Array.isArray(exp)) return exp.map(mapExports);
  if (exp && typeof exp === 'object')
    return Object.fromEntries(Object.entries(exp).map(([k, v]) => [k, mapExports(v)]));
  return exp;
}

function writeManifest(out, short) {
  const dir = PACKAGES[short];
  const pkg = readJson(join(ROOT, dir, 'package.json'));
  const deps = Object.fromEntries(
    Object.entries(pkg.dependencies ?? {}).filter(([n]) => !DROPPED_DEPS.has(n)),
  );
  const manifest = {
    name: pkg.name,
    version: pkg.version,
    private: true,
    type: pkg.type,
    ...(pkg.description ? { description: pkg.description } : {}),
    ...(pkg.license ? { license: pkg.license } : {}),
    ...(pkg.exports ? { exports: mapExports(pkg.exports) } : {}),
    ...(pkg.bin ? { bin: pkg.bin } : {}),
    ...(pkg.napi ? { napi: pkg.napi } : {}),
    dependencies: deps,
  };
  mkdirSync(join(out, dir), { recursive: true });
  writeFileSync(join(out, dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

/** Plain-JS replacements of the tsx bootstraps (same paths, so nothing that refers to them changes). */
const BOOTSTRAPS = {
  cli: {
    'bin/spark.mjs':
      "#!/usr/bin/env node\n// The `spark` executable of the compiled tree (scripts/build-dist.mjs): plain Node, no tsx.\nconst { main } = await import('../src/main.js');\nprocess.exitCode = await main(process.argv.slice(2));\n",
  },
  verify: {
    'src/symbolic-worker-entry.mjs':
      "// Worker bootstrap of the compiled tree (scripts/build-dist.mjs): the worker is already JavaScript.\nawait import('./symbolic-worker.js');\n",
  },
};

function copyAssets(out, shorts) {
  for (const short of shorts) {
    for (const [rel, text] of Object.entries(BOOTSTRAPS[short] ?? {})) {
      if (!existsSync(join(ROOT, PACKAGES[short], rel)))
        fail(`${PACKAGES[short]}/${rel} is gone; update BOOTSTRAPS`);
      mkdirSync(dirname(join(out, PACKAGES[short], rel)), { recursive: true });
      writeFileSync(join(out, PACKAGES[short], rel), text);
    }
  }
  if (shorts.includes('runtime')) {
    // services/lib/runtime/src/grpc reads ../../../../../proto (server reflection).
    cpSync(join(ROOT, 'proto'), join(out, 'proto'), {
      recursive: true,
      filter: (src) => statSync(src).isDirectory() || src.endsWith('.proto'),
    });
  }
  if (shorts.includes('kernels')) {
    const addons = readdirSync(join(ROOT, 'kernels')).filter((f) => f.endsWith('.node'));
    if (addons.length === 0)
      process.stderr.write('build-dist: warning: no native addon in kernels/ (not built)\n');
    for (const f of addons) copyFileSync(join(ROOT, 'kernels', f), join(out, 'kernels', f));
  }
}

/** `.pnpm/<id>` directory that a path under the store belongs to. */
function storeEntry(real) {
  const parts = real.split(sep);
  const i = parts.lastIndexOf('.pnpm');
  if (i < 0) fail(`${real} is not in a pnpm store (node_modules/.pnpm)`);
  return { storeDir: parts.slice(0, i + 1).join(sep), id: parts[i + 1] };
}

function linkDependencies(out, shorts, manifests) {
  const entries = new Map(); // id → absolute store path of .pnpm/<id>
  const queue = [];
  const want = (real) => {
    const { storeDir, id } = storeEntry(real);
    if (!entries.has(id)) {
      entries.set(id, join(storeDir, id));
      queue.push(id);
    }
    return id;
  };
  const link = (target, at) => {
    mkdirSync(dirname(at), { recursive: true });
    rmSync(at, { recursive: true, force: true });
    symlinkSync(relative(dirname(at), target), at);
  };
  for (const short of shorts) {
    const dir = PACKAGES[short];
    for (const name of Object.keys(manifests.get(short).dependencies)) {
      const at = join(out, dir, 'node_modules', name);
      const ws = byName.get(name);
      if (ws) {
        link(join(out, ws.dir), at);
        continue;
      }
      const src = join(ROOT, dir, 'node_modules', name);
      if (!existsSync(src)) fail(`${dir}: dependency ${name} is not installed (run pnpm install)`);
      const real = realpathSync(src);
      const id = want(real);
      link(join(out, 'node_modules', '.pnpm', id, relative(entries.get(id), real)), at);
    }
  }
  // The store entries those need: each entry's node_modules holds its dependencies as sibling links.
  while (queue.length > 0) {
    const id = queue.shift();
    const nm = join(entries.get(id), 'node_modules');
    for (const name of readdirSync(nm)) {
      const scoped = name.startsWith('@') ? readdirSync(join(nm, name)).map((n) => join(name, n)) : [name];
      for (const n of scoped) {
        const p = join(nm, n);
        if (lstatSync(p).isSymbolicLink() && existsSync(p)) want(realpathSync(p));
      }
    }
  }
  for (const [id, src] of entries) {
    const at = join(out, 'node_modules', '.pnpm', id);
    mkdirSync(dirname(at), { recursive: true });
    cpSync(src, at, { recursive: true, verbatimSymlinks: true });
  }
  return entries.size;
}

function* walk(dir) {
  for (const name of readdirSync(dir)) {
    if (name === 'node_modules') continue;
    const p = join(dir, name);
    const st = lstatSync(p);
    if (st.isDirectory()) yield* walk(p);
    else if (st.isFile()) yield p;
  }
}

function verify(out, shorts) {
  const problems = [];
  for (const short of shorts) {
    for (const file of walk(join(out, PACKAGES[short]))) {
      if (file.endsWith('.ts')) problems.push(`${relative(out, file)}: a TypeScript file`);
      if (!/\.m?js$/.test(file)) continue;
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from\s*|import\s*\(\s*|import\s+)['"]([^'"]+)['"]/g)) {
        const spec = m[1];
        if (spec === 'tsx' || spec.startsWith('tsx/'))
          problems.push(`${relative(out, file)} imports ${spec}`);
        if (spec.startsWith('.') && /\.[mc]?ts$/.test(spec))
          problems.push(`${relative(out, file)} imports ${spec}`);
      }
    }
  }
  if (problems.length > 0) fail(`the compiled tree is not plain JavaScript:\n  ${problems.join('\n  ')}`);
}

function main() {
  const { values } = parseArgs({
    options: {
      out: { type: 'string' },
      only: { type: 'string' },
    },
  });
  if (!values.out) fail('usage: node scripts/build-dist.mjs --out DIR [--only a,b]');
  const out = resolve(values.out);
  if (out === ROOT || ROOT.startsWith(out + sep)) fail(`--out ${out} would overwrite the workspace`);
  if (existsSync(out) && readdirSync(out).length > 0) fail(`--out ${out} is not empty`);
  const only = values.only
    ? values.only
        .split(/[\s,]+/)
        .filter(Boolean)
        .map((s) => (s === 'all' ? DEFAULT_ONLY : [s]))
        .flat()
    : DEFAULT_ONLY;
  const shorts = closure(only);
  const started = Date.now();
  compile(out, shorts);
  const manifests = new Map(shorts.map((s) => [s, writeManifest(out, s)]));
  copyAssets(out, shorts);
  const stored = linkDependencies(out, shorts, manifests);
  verify(out, shorts);
  process.stdout.write(
    `build-dist: ${shorts.join(', ')} → ${out} (${stored} store entries copied, ${((Date.now() - started) / 1000).toFixed(1)} s)\n`,
  );
}

main();
