// The package layering, checked: which workspace package may import which. Imports run one way —
// services → contract/method → runtime/protocol — and no service imports another service's code (they
// talk over queues and gRPC only). The CLI may resolve a service's `./main` entry (to launch it) but not
// import its code. Also: no relative import leaves its package, and each package.json declares exactly
// the workspace packages its sources import (tests may add dev dependencies).
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';

const root = resolve(import.meta.dirname, '..');

/** Every workspace package: its folder, and the workspace packages its non-test sources may import. */
const LAYERS: Record<string, { dir: string; may: readonly string[]; srcDirs?: readonly string[] }> = {
  '@spark/protocol': { dir: 'services/lib/protocol', may: [] },
  '@spark/kernels': { dir: 'kernels', may: [], srcDirs: ['ts'] },
  '@spark/runtime': { dir: 'services/lib/runtime', may: [] },
  '@spark/verify': { dir: 'services/lib/verify', may: [] },
  '@spark/contract': { dir: 'services/lib/contract', may: ['@spark/runtime', '@spark/protocol'] },
  '@spark/method': {
    dir: 'services/lib/method',
    may: ['@spark/runtime', '@spark/contract', '@spark/kernels'],
  },
  ...Object.fromEntries(
    ['coordinator', 'rollout', 'verifier', 'reward-synthesis', 'learner'].map((s) => [
      `@spark/${s}`,
      {
        dir: `services/${s}`,
        may: [
          '@spark/runtime',
          '@spark/protocol',
          '@spark/contract',
          '@spark/method',
          '@spark/verify',
          '@spark/kernels',
        ],
      },
    ]),
  ),
  '@spark/cli': {
    dir: 'services/cli',
    may: [
      '@spark/runtime',
      '@spark/protocol',
      '@spark/contract',
      '@spark/method',
      '@spark/kernels',
      '@spark/verify',
    ],
  },
};

/** Tests of a package may also use these (the protocol's messages as a test service for runtime's gRPC). */
const TEST_ALSO: Record<string, readonly string[]> = {
  '@spark/runtime': ['@spark/protocol'],
  // evaluation's tests score with the real answer checker
  '@spark/method': ['@spark/verify'],
};

const SERVICES = ['coordinator', 'rollout', 'verifier', 'reward-synthesis', 'learner'];

function sources(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      if (name === 'node_modules' || name === 'dist' || name === 'gen' || name === 'target') continue;
      const full = join(d, name);
      if (statSync(full).isDirectory()) walk(full);
      else if (/\.(ts|mts|mjs)$/.test(name) && !name.endsWith('.d.ts')) out.push(full);
    }
  };
  walk(dir);
  return out;
}

/** Module specifiers of static imports/exports and dynamic imports (string literals). */
function specifiers(text: string): string[] {
  const out: string[] = [];
  const re = /(?:\bfrom\s+|\bimport\s*\(\s*|\bimport\s+|import\.meta\.resolve\(\s*)['"`]([^'"`]+)['"`]/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text))) out.push(m[1]!);
  return out;
}

function packageOf(spec: string): string | null {
  const m = /^(@spark\/[a-z-]+)/.exec(spec);
  return m ? m[1]! : null;
}

describe('package layering', () => {
  it('knows every workspace package', () => {
    const found = ['services', 'services/lib'].flatMap((base) =>
      readdirSync(join(root, base))
        .filter((d) => existsSync(join(root, base, d, 'package.json')))
        .map((d) => JSON.parse(readFileSync(join(root, base, d, 'package.json'), 'utf8')) as { name: string })
        .map((p) => p.name),
    );
    for (const name of found) assert.ok(LAYERS[name], `${name} is not in the layering table`);
  });

  for (const [name, layer] of Object.entries(LAYERS)) {
    it(`${name} imports only what its layer allows`, () => {
      const dir = join(root, layer.dir);
      const problems: string[] = [];
      const used = new Set<string>();
      const usedByTests = new Set<string>();
      for (const srcDir of layer.srcDirs ?? ['src']) {
        for (const file of sources(join(dir, srcDir))) {
          const isTest = /\.test\.ts$/.test(file);
          const rel = relative(root, file);
          for (const spec of specifiers(readFileSync(file, 'utf8'))) {
            if (spec.startsWith('.')) {
              const target = resolve(dirname(file), spec);
              if (!target.startsWith(dir + '/'))
                problems.push(`${rel}: relative import ${spec} leaves the package`);
              continue;
            }
            const pkg = packageOf(spec);
            if (!pkg || pkg === name) continue;
            const launchOnly = name === '@spark/cli' && SERVICES.some((s) => spec === `@spark/${s}/main`);
            if (launchOnly) {
              used.add(pkg);
              continue;
            }
            if (isTest) {
              usedByTests.add(pkg);
              if (![...layer.may, ...(TEST_ALSO[name] ?? [])].includes(pkg))
                problems.push(`${rel} (test): imports ${spec}`);
            } else {
              used.add(pkg);
              if (!layer.may.includes(pkg)) problems.push(`${rel}: imports ${spec}, not allowed for ${name}`);
            }
          }
        }
      }
      assert.deepEqual(problems, [], problems.join('\n'));
      const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
        dependencies?: Record<string, string>;
        devDependencies?: Record<string, string>;
      };
      const declared = Object.keys(manifest.dependencies ?? {}).filter((d) => d.startsWith('@spark/'));
      const declaredDev = Object.keys(manifest.devDependencies ?? {}).filter((d) => d.startsWith('@spark/'));
      assert.deepEqual(declared.sort(), [...used].sort(), `${name}: dependencies vs. imports`);
      for (const pkg of usedByTests)
        if (!used.has(pkg)) assert.ok(declaredDev.includes(pkg), `${name}: tests use ${pkg}, not declared`);
      assert.ok(existsSync(join(dir, 'README.md')), `${name} has no README.md saying what it owns`);
    });
  }
});
