// The container build (deploy/docker/Dockerfile), checked by reading it (Docker does not run here): every
// path it copies from the build context exists and survives the .dockerignore, its pinned tool versions
// agree with the repository, it runs as a non-root user, and the entry points it and the chart start exist.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, it } from 'node:test';

import { repoRoot, SERVICE_BLOCKS, templateFiles } from './chart.js';

const dockerDir = join(repoRoot, 'deploy', 'docker');
const dockerfile = readFileSync(join(dockerDir, 'Dockerfile'), 'utf8');
const ignore = readFileSync(join(dockerDir, 'Dockerfile.dockerignore'), 'utf8')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l && !l.startsWith('#'));

/** Dockerfile instructions with continuation lines joined. */
function instructions(text: string): string[] {
  return text
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

/** Whether a .dockerignore pattern list excludes `path` (the subset of the syntax used here). */
function ignored(path: string): boolean {
  let out = false;
  for (const raw of ignore) {
    const negate = raw.startsWith('!');
    const pattern = negate ? raw.slice(1) : raw;
    const re = new RegExp(
      '^' +
        pattern
          .replace(/[.+^${}()|[\]\\]/g, '\\$&')
          .replace(/\*\*\//g, '\u0000')
          .replace(/\*/g, '[^/]*')
          .replaceAll('\u0000', '(.*/)?') +
        '(/.*)?$',
    );
    if (re.test(path)) out = !negate;
  }
  return out;
}

function arg(name: string): string {
  const m = new RegExp(`^ARG ${name}=(\\S+)$`, 'm').exec(dockerfile);
  assert.ok(m, `Dockerfile has ARG ${name}=…`);
  return m[1]!;
}

describe('Dockerfile', () => {
  it('copies only context paths that exist and are not ignored', () => {
    const copies = instructions(dockerfile).filter((l) => /^COPY\b/.test(l) && !/--from=/.test(l));
    assert.ok(copies.length >= 2);
    for (const line of copies) {
      const parts = line
        .split(/\s+/)
        .slice(1)
        .filter((p) => !p.startsWith('--'));
      const sources = parts.slice(0, -1);
      for (const src of sources) {
        if (src === '.') continue;
        assert.ok(existsSync(join(repoRoot, src)), `COPY source ${src} exists`);
        assert.equal(ignored(src), false, `COPY source ${src} is not excluded by the .dockerignore`);
      }
    }
    // The ignore rules keep the sources and drop build outputs.
    assert.equal(ignored('services/lib/runtime/src/index.ts'), false);
    assert.equal(ignored('pnpm-lock.yaml'), false);
    assert.equal(ignored('node_modules/x'), true);
    assert.equal(ignored('services/learner/node_modules/y'), true);
    assert.equal(ignored('kernels/target/release/libspark_kernels.so'), true);
  });

  it('pins the pnpm of packageManager and a Node that satisfies engines', () => {
    const pkg = JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')) as {
      packageManager: string;
      engines: { node: string };
    };
    assert.equal(`pnpm@${arg('PNPM_VERSION')}`, pkg.packageManager);
    const [major, minor] = arg('NODE_VERSION').split('.').map(Number) as [number, number];
    const [wantMajor, wantMinor] = /^>=(\d+)\.(\d+)/.exec(pkg.engines.node)!.slice(1).map(Number) as [
      number,
      number,
    ];
    assert.ok(major > wantMajor || (major === wantMajor && minor >= wantMinor), `Node ${major}.${minor}`);
    assert.match(arg('RUST_VERSION'), /^\d+\.\d+\.\d+$/);
  });

  it('installs from the lockfile and builds the addon the loader looks for', () => {
    assert.match(dockerfile, /pnpm install --offline --frozen-lockfile/);
    const kernels = JSON.parse(readFileSync(join(repoRoot, 'kernels', 'package.json'), 'utf8')) as {
      name: string;
      napi: { binaryName: string };
      scripts: { build: string };
    };
    assert.ok(dockerfile.includes(`pnpm --filter ${kernels.name} run build`));
    assert.ok(dockerfile.includes(`kernels/${kernels.napi.binaryName}.linux-*-gnu.node`));
  });

  it('can resolve tsx from /app after the production install', () => {
    // `--prod` drops the root's devDependencies; the image links the root's tsx to a service's.
    const link = /ln -sfn "\$\(readlink -f services\/([\w-]+)\/node_modules\/tsx\)" node_modules\/tsx/.exec(
      dockerfile,
    );
    assert.ok(link, 'the prod stage links node_modules/tsx');
    for (const dir of new Set([link[1]!, ...Object.values(SERVICE_BLOCKS)])) {
      const pkg = JSON.parse(readFileSync(join(repoRoot, 'services', dir, 'package.json'), 'utf8')) as {
        dependencies?: Record<string, string>;
      };
      assert.ok(pkg.dependencies?.tsx, `services/${dir} has tsx as a production dependency`);
    }
    assert.match(dockerfile, /node --import tsx --eval 'process\.exit\(0\)'/);
  });

  it('runs as a non-root user in every final stage', () => {
    const stages = dockerfile.split(/^FROM /m).slice(1);
    for (const name of ['runtime', 'cuda']) {
      const stage = stages.find((s) => new RegExp(` AS ${name}\\b`).test(s.split('\n')[0]!));
      assert.ok(stage, `stage ${name}`);
      assert.match(stage, /^USER 10001:10001$/m);
    }
  });

  it('starts entry points that exist (image CMD and every chart service)', () => {
    for (const m of dockerfile.matchAll(/"(services\/[\w-]+\/src\/main\.ts)"/g)) {
      assert.ok(existsSync(join(repoRoot, m[1]!)), `${m[1]!} exists`);
    }
    const helpers = templateFiles().find((t) => t.name === '_helpers.tpl')!.text;
    assert.match(helpers, /args: \["node", "--import", "tsx", "services\/\{\{ \.dir \}\}\/src\/main\.ts"\]/);
    for (const dir of Object.values(SERVICE_BLOCKS)) {
      assert.ok(
        existsSync(join(repoRoot, 'services', dir, 'src', 'main.ts')),
        `services/${dir}/src/main.ts exists`,
      );
    }
  });
});
