// The Helm chart rendered by helm itself: `helm lint --strict` and `helm template` over the default values
// and the value sets in test/deploy/values/, every rendered object validated offline against the
// Kubernetes API types and the CRD schemas (deploy/validate), what each value set must render, the
// impossible values refused with their message, values.schema.json enforced, and the PrometheusRule equal
// to deploy/prometheus/rules.yaml. helm comes from `.ci/run` (.tools/bin/helm, pinned v4.3.2); without it
// (or without Go for the validator) the tests skip locally and fail under CI=true.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { describe, it } from 'node:test';

import { parse as parseYaml, parseAllDocuments } from 'yaml';

import { chartDir, readValues, repoRoot } from './chart.js';

const valuesDir = join(repoRoot, 'test', 'deploy', 'values');
const validateDir = join(repoRoot, 'deploy', 'validate');
/** The CRD schemas (third-party, not committed): deploy/validate/fetch.sh writes them from the pinned modules. */
const crdDir = join(repoRoot, '.tools', 'crds');
const toolsBin = join(repoRoot, '.tools', 'bin');
const inCI = process.env.CI === 'true' || process.env.CI === '1';

function run(
  cmd: string,
  args: string[],
  cwd = repoRoot,
): { status: number | null; out: string; err: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return { status: r.status, out: r.stdout ?? '', err: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
}

function goBin(): string | null {
  const r = run('go', ['env', 'GOPATH']);
  return r.status === 0 ? join(r.out.trim().split(delimiter)[0]!, 'bin') : null;
}

/** helm v4: $SPARK_HELM, .tools/bin/helm (.ci/run), $GOPATH/bin/helm (go install), then PATH. */
function findHelm(): { path: string | null; why: string } {
  const gb = goBin();
  const candidates = [
    process.env.SPARK_HELM,
    join(toolsBin, 'helm'),
    gb ? join(gb, 'helm') : undefined,
    'helm',
  ].filter((c): c is string => !!c);
  for (const c of candidates) {
    if (c !== 'helm' && !existsSync(c)) continue;
    const v = run(c, ['version', '--template', '{{.Version}}']);
    if (v.status === 0 && /^v4\./.test(v.out.trim())) return { path: c, why: '' };
  }
  return {
    path: null,
    why: 'helm v4 not found (.ci/run installs it: go install helm.sh/helm/v4/cmd/helm@v4.3.2)',
  };
}

/** The validator: built from deploy/validate with Go (incremental), else a binary .ci/run left. */
function buildValidator(): { path: string | null; why: string } {
  const out = join(toolsBin, 'spark-validate');
  const r = run('go', ['build', '-mod=readonly', '-o', out, '.'], validateDir);
  const built = r.status === 0 || (r.err.includes('ENOENT') && existsSync(out));
  if (built && !existsSync(join(crdDir, 'keda.sh_scaledobjects.crd'))) {
    const f = run('bash', [join(validateDir, 'fetch.sh'), crdDir], repoRoot);
    if (f.status !== 0)
      return { path: null, why: `cannot fetch the CRD schemas: ${f.err.trim().slice(0, 500)}` };
  }
  if (built) return { path: out, why: '' };
  return { path: null, why: `cannot build deploy/validate: ${r.err.trim().slice(0, 500)}` };
}

const helm = findHelm();
const validator = helm.path ? buildValidator() : { path: null, why: 'skipped with helm' };
const missing = helm.path ? (validator.path ? '' : validator.why) : helm.why;
if (missing && inCI) {
  // Under CI a missing tool is a failure, never a skip.
  describe('helm chart (rendered)', () => {
    it('has helm and the validator', () => assert.fail(missing));
  });
}
// Under CI the test above fails; the rendered tests are skipped rather than failing once per test.
const skip = missing || false;

const VALUE_SETS = readdirSync(valuesDir)
  .filter((f) => f.endsWith('.yaml'))
  .sort();

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  spec?: Record<string, unknown>;
  data?: Record<string, string>;
  stringData?: Record<string, string>;
}

function template(args: string[]): { status: number | null; out: string; err: string } {
  return run(helm.path!, ['template', 'spark', chartDir, '--namespace', 'spark', ...args]);
}

function render(valueFile: string | null, extra: string[] = []): K8sObject[] {
  const args = [...(valueFile ? ['-f', join(valuesDir, valueFile)] : []), ...extra];
  const r = template(args);
  assert.equal(r.status, 0, `helm template ${args.join(' ')}:\n${r.err}`);
  return parseAllDocuments(r.out)
    .map((d) => d.toJSON() as K8sObject | null)
    .filter((o): o is K8sObject => o !== null);
}

function find(objs: K8sObject[], kind: string, name: string): K8sObject {
  const o = objs.find((x) => x.kind === kind && x.metadata.name === name);
  assert.ok(o, `${kind} ${name} rendered`);
  return o;
}

type Container = {
  name: string;
  image: string;
  args?: string[];
  command?: string[];
  env?: { name: string; value?: string; valueFrom?: Record<string, Record<string, string>> }[];
  resources?: { requests?: Record<string, unknown>; limits?: Record<string, unknown> };
};
type PodSpec = { containers: Container[]; tolerations?: { key: string }[] };

function podSpec(o: K8sObject): PodSpec {
  return (o.spec as { template: { spec: PodSpec } }).template.spec;
}
function checksum(o: K8sObject): string {
  return (o.spec as { template: { metadata: { annotations: Record<string, string> } } }).template.metadata
    .annotations['checksum/config']!;
}

const WORKLOADS: [string, string][] = [
  ['Deployment', 'spark-coordinator'],
  ['Deployment', 'spark-rollout'],
  ['Deployment', 'spark-verifier'],
  ['Deployment', 'spark-reward-synthesis'],
  ['StatefulSet', 'spark-learner'],
];

describe('helm chart (rendered)', { skip }, () => {
  it('passes helm lint --strict with every value set', () => {
    assert.ok(VALUE_SETS.length >= 4, 'default + at least three other value sets');
    for (const f of VALUE_SETS) {
      const r = run(helm.path!, ['lint', '--strict', chartDir, '-f', join(valuesDir, f)]);
      assert.equal(r.status, 0, `helm lint ${f}:\n${r.out}${r.err}`);
    }
  });

  it('renders objects the Kubernetes API and the CRD schemas accept, for every value set', () => {
    for (const f of VALUE_SETS) {
      const r = template(['-f', join(valuesDir, f)]);
      assert.equal(r.status, 0, `helm template ${f}:\n${r.err}`);
      const v = spawnSync(validator.path!, ['-crds', crdDir, '-'], {
        input: r.out,
        encoding: 'utf8',
      });
      assert.equal(v.status, 0, `deploy/validate on ${f}:\n${v.stdout}${v.stderr}`);
      assert.match(v.stderr, /validate: \d+ object\(s\), 0 problem\(s\)/);
    }
  });

  it('has a validator that rejects what the API server would (unknown fields, wrong types, CRD fields)', () => {
    const bad: [string, RegExp][] = [
      [
        'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: b}}\n    spec: {containers: [{name: c, image: i}]}\n',
        /unknown field "spec\.replica"/,
      ],
      [
        'apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: "http"}]}\n',
        /cannot unmarshal string/,
      ],
      [
        'apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  selector: {matchLabels: {a: b}}\n  template:\n    metadata: {labels: {a: c}}\n    spec: {containers: [{name: c, image: i}]}\n',
        /does not match the pod template/,
      ],
      [
        'apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: x}\nspec:\n  scaleTargetRef: {name: d}\n  minReplicas: 0\n  triggers: [{type: prometheus, metadata: {}}]\n',
        /unknown field "spec\.minReplicas"/,
      ],
      [
        'apiVersion: cert-manager.io/v1\nkind: Certificate\nmetadata: {name: x}\nspec: {secretName: s, issuerRef: {name: i}, duration: 5}\n',
        /duration/,
      ],
      [
        'apiVersion: example.com/v1\nkind: Unknown\nmetadata: {name: x}\n',
        /no schema for example\.com\/v1, Kind=Unknown/,
      ],
      [
        'apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec:\n  containers:\n    - name: c\n      image: i:1\n      volumeMounts: [{name: a, mountPath: /etc/a}, {name: b, mountPath: /etc/a/b}]\n  volumes: [{name: a, configMap: {name: a}}, {name: b, secret: {secretName: b}}]\n',
        /\/etc\/a\/b is inside \/etc\/a,/,
      ],
    ];
    for (const [doc, why] of bad) {
      const v = spawnSync(validator.path!, ['-crds', crdDir, '-'], {
        input: doc,
        encoding: 'utf8',
      });
      assert.equal(v.status, 1, `accepted:\n${doc}\n${v.stdout}${v.stderr}`);
      assert.match(v.stdout, why);
    }
  });

  it('default values: threads from the CPU limit, no GPU toleration, AlwaysAllow PDBs, per-component checksums', () => {
    const objs = render('default.yaml');
    for (const [kind, name] of WORKLOADS) {
      const spec = podSpec(find(objs, kind, name));
      const c = spec.containers[0]!;
      assert.ok(c.resources?.limits?.cpu, `${name} has a CPU limit`);
      const threads = c.env?.find((e) => e.name === 'SPARK_THREADS');
      assert.deepEqual(threads?.valueFrom?.resourceFieldRef, {
        containerName: c.name,
        resource: 'limits.cpu',
        divisor: '1',
      });
      assert.equal(spec.tolerations, undefined, `${name} tolerates no taint by default`);
      assert.equal(c.image, 'ghcr.io/spark-project/spark:0.1.0');
    }
    const pdbs = objs.filter((o) => o.kind === 'PodDisruptionBudget');
    assert.equal(pdbs.length, 5);
    for (const p of pdbs) assert.equal(p.spec?.unhealthyPodEvictionPolicy, 'AlwaysAllow');
    assert.equal(find(objs, 'PodDisruptionBudget', 'spark-learner').spec?.maxUnavailable, 0);
    // No CRD objects unless asked for.
    assert.deepEqual(
      objs.filter((o) => !/^(v1|apps\/v1|policy\/v1)$/.test(o.apiVersion)).map((o) => o.kind),
      [],
    );
  });

  it('restarts only the component whose config changed, and every component when a chart-held secret changes', () => {
    const sums = (objs: K8sObject[]): Record<string, string> =>
      Object.fromEntries(WORKLOADS.map(([k, n]) => [n, checksum(find(objs, k, n))]));
    const base = sums(render('default.yaml'));
    const verifier = sums(render('default.yaml', ['--set', 'verifier.config.budgetMs=200']));
    const changed = Object.keys(base).filter((n) => base[n] !== verifier[n]);
    assert.deepEqual(changed, ['spark-verifier']);
    const token = sums(render('default.yaml', ['--set', 'auth.token=another-token-0123456789']));
    assert.ok(
      Object.keys(base).every((n) => base[n] !== token[n]),
      'a token rotation restarts every pod',
    );
    const common = sums(render('default.yaml', ['--set', 'logLevel=debug']));
    assert.ok(Object.keys(base).every((n) => base[n] !== common[n]));
  });

  it('external Redis + TLS: Certificate, NetworkPolicies, monitoring objects and dashboards', () => {
    const objs = render('external-redis-tls.yaml');
    const cert = find(objs, 'Certificate', 'spark-tls');
    const dns = (cert.spec as { dnsNames: string[]; secretName: string }).dnsNames;
    assert.ok(dns.includes('spark-coordinator.spark.svc') && dns.includes('spark-learner.spark.svc'));
    assert.ok(dns.includes('spark.example.com'));
    assert.equal((cert.spec as { secretName: string }).secretName, 'spark-tls');
    const learner = podSpec(find(objs, 'StatefulSet', 'spark-learner')) as PodSpec & {
      volumes: { name: string; secret?: { secretName: string } }[];
    };
    assert.equal(learner.volumes.find((v) => v.name === 'tls')?.secret?.secretName, 'spark-tls');
    // The secrets come from existing Secrets: the chart holds none.
    assert.equal(
      objs.some((o) => o.kind === 'Secret'),
      false,
    );
    // NetworkPolicies: default deny + the flows.
    const deny = find(objs, 'NetworkPolicy', 'spark-default-deny');
    assert.deepEqual(deny.spec?.policyTypes, ['Ingress', 'Egress']);
    assert.equal(deny.spec?.ingress, undefined);
    assert.equal(deny.spec?.egress, undefined);
    const learnerNp = find(objs, 'NetworkPolicy', 'spark-learner').spec as {
      ingress: {
        from: { podSelector?: { matchLabels: Record<string, string> } }[];
        ports: { port: string }[];
      }[];
    };
    const grpcIn = learnerNp.ingress.find((r) => r.ports.some((p) => p.port === 'grpc'))!;
    assert.deepEqual(
      grpcIn.from.map((f) => f.podSelector?.matchLabels['app.kubernetes.io/component']),
      ['rollout'],
      'only rollout workers reach the PolicyService',
    );
    const rolloutNp = find(objs, 'NetworkPolicy', 'spark-rollout').spec as {
      egress: { to?: unknown[]; ports: { port: number | string; protocol: string }[] }[];
    };
    const redisOut = rolloutNp.egress.find((r) => r.ports.some((p) => p.port === 6380))!;
    assert.deepEqual(redisOut.to, [{ ipBlock: { cidr: '10.20.0.0/16' } }]);
    assert.ok(rolloutNp.egress.some((r) => r.ports.some((p) => p.port === 53 && p.protocol === 'UDP')));
    // Monitoring objects.
    const sm = find(objs, 'ServiceMonitor', 'spark');
    assert.equal(sm.metadata.labels?.release, 'kube-prometheus-stack');
    const rule = find(objs, 'PrometheusRule', 'spark');
    const text = JSON.stringify(rule.spec);
    assert.match(text, /le=\\"0\.2\\"/, 'the verifier alert follows verifier.config.budgetMs');
    assert.match(text, /redis_up\{job=\\"redis-exporter\\"\}/);
    assert.match(text, /\[2h\]/, 'alerts.jobStuckWindow');
    const boards = objs.filter((o) => o.kind === 'ConfigMap' && o.metadata.name.includes('-dashboard-'));
    assert.equal(boards.length, 4);
    for (const b of boards) {
      assert.equal(b.metadata.labels?.grafana_dashboard, '1');
      assert.equal(b.metadata.annotations?.grafana_folder, 'Spark');
      const [file, json] = Object.entries(b.data!)[0]!;
      const board = JSON.parse(json) as { uid: string };
      assert.equal(`${board.uid}.json`, file);
    }
  });

  it('autoscaling: ScaledObjects on the queue depth, no replicas in the Deployments, bundled Redis with headroom', () => {
    const objs = render('autoscaling.yaml');
    for (const [name, role, min] of [
      ['spark-rollout', 'rollout', 0],
      ['spark-verifier', 'verify', 1],
    ] as const) {
      const dep = find(objs, 'Deployment', name);
      assert.equal('replicas' in dep.spec!, false, `${name} leaves replicas to KEDA`);
      const so = find(objs, 'ScaledObject', name).spec as {
        minReplicaCount: number;
        scaleTargetRef: { name: string };
        triggers: { type: string; metadata: { query: string; serverAddress: string } }[];
      };
      assert.equal(so.minReplicaCount, min);
      assert.equal(so.scaleTargetRef.name, name);
      assert.equal(so.triggers[0]!.type, 'prometheus');
      assert.equal(
        so.triggers[0]!.metadata.query,
        `sum(spark_coordinator_queue_depth_tasks{namespace="spark",job="spark-coordinator",role="${role}"})`,
      );
    }
    assert.equal(typeof find(objs, 'Deployment', 'spark-coordinator').spec?.replicas, 'number');
    // Redis: maxmemory 55% of 2560Mi, the password nowhere on a command line.
    const conf = find(objs, 'ConfigMap', 'spark-redis').data!['redis.conf']!;
    assert.match(conf, new RegExp(`^maxmemory ${Math.floor((2560 * 1048576 * 55) / 100)}$`, 'm'));
    assert.match(conf, /^maxmemory-policy noeviction$/m);
    assert.match(conf, /^include \/etc\/redis\/auth\/redis-auth\.conf$/m);
    type Mounts = { volumeMounts: { name: string; mountPath: string }[] };
    const mounts = (podSpec(find(objs, 'StatefulSet', 'spark-redis')).containers[0] as Container & Mounts)
      .volumeMounts;
    for (const a of mounts)
      for (const b of mounts)
        assert.ok(
          a === b || !b.mountPath.startsWith(`${a.mountPath}/`),
          `${b.mountPath} nested in ${a.mountPath}`,
        );
    assert.deepEqual(podSpec(find(objs, 'StatefulSet', 'spark-redis')).containers[0]!.args, [
      'redis-server',
      '/etc/redis/conf/redis.conf',
    ]);
    const secret = find(objs, 'Secret', 'spark-secrets').stringData!;
    assert.equal(secret['redis-auth.conf'], 'requirepass "bundled-redis-password-0123"\n');
    const redis = podSpec(find(objs, 'StatefulSet', 'spark-redis'));
    const all = JSON.stringify(
      redis.containers.map((c) => [c.args, c.command, (c as { readinessProbe?: unknown }).readinessProbe]),
    );
    assert.doesNotMatch(all, /bundled-redis-password|REDIS_PASSWORD|requirepass/);
    assert.deepEqual(
      redis.containers.map((c) => c.name),
      ['redis', 'metrics'],
    );
    const sm = find(objs, 'ServiceMonitor', 'spark').spec as {
      selector: { matchExpressions: { values: string[] }[] };
    };
    assert.ok(sm.selector.matchExpressions[0]!.values.includes('redis'));
    assert.ok(find(objs, 'NetworkPolicy', 'spark-redis'));
  });

  it('learner group: ranks = replicas, rank 0 alone behind the PolicyService Service, pod IPs for Gloo, /dev/shm in memory, spread over nodes, peers allowed', () => {
    const objs = render('learner-group.yaml');
    const sts = find(objs, 'StatefulSet', 'spark-learner');
    assert.equal(sts.spec?.replicas, 4);
    assert.equal(sts.spec?.serviceName, 'spark-learner-headless');
    const config = find(objs, 'ConfigMap', 'spark-learner').data ?? {};
    assert.equal(config.SPARK_LEARNER_RANKS, '4');
    assert.equal(config.SPARK_LEARNER_ZERO, 'true');
    assert.equal(config.SPARK_COLLECTIVE_TIMEOUT_MS, '120000');
    const pod = podSpec(sts) as PodSpec & {
      volumes: { name: string; emptyDir?: { medium?: string; sizeLimit?: string } }[];
      topologySpreadConstraints?: { topologyKey: string; maxSkew: number; whenUnsatisfiable: string }[];
    };
    const env = pod.containers[0]!.env ?? [];
    assert.deepEqual(env.find((e) => e.name === 'POD_IP')?.valueFrom, {
      fieldRef: { fieldPath: 'status.podIP' },
    });
    assert.equal(env.find((e) => e.name === 'SPARK_COLLECTIVE_HOST')?.value, '$(POD_IP)');
    assert.deepEqual(pod.volumes.find((v) => v.name === 'dshm')?.emptyDir, {
      medium: 'Memory',
      sizeLimit: '2Gi',
    });
    const mounts = (pod.containers[0] as Container & { volumeMounts: { name: string; mountPath: string }[] })
      .volumeMounts;
    assert.equal(mounts.find((m) => m.name === 'dshm')?.mountPath, '/dev/shm');
    assert.deepEqual(
      pod.topologySpreadConstraints?.map((t) => [t.topologyKey, t.maxSkew, t.whenUnsatisfiable]),
      [['kubernetes.io/hostname', 1, 'DoNotSchedule']],
    );
    const svc = find(objs, 'Service', 'spark-learner').spec as { selector: Record<string, string> };
    assert.equal(svc.selector['statefulset.kubernetes.io/pod-name'], 'spark-learner-0');
    const headless = find(objs, 'Service', 'spark-learner-headless').spec as {
      selector: Record<string, string>;
    };
    assert.equal(
      headless.selector['statefulset.kubernetes.io/pod-name'],
      undefined,
      'every rank has a DNS name',
    );
    const np = find(objs, 'NetworkPolicy', 'spark-learner').spec as {
      ingress: { from: { podSelector: { matchLabels: Record<string, string> } }[]; ports?: unknown[] }[];
      egress: { to: { podSelector?: { matchLabels: Record<string, string> } }[]; ports?: unknown[] }[];
    };
    const peer = (r: { ports?: unknown[]; from?: unknown; to?: unknown }) =>
      r.ports === undefined &&
      JSON.stringify(r.from ?? r.to).includes('"app.kubernetes.io/component":"learner"');
    assert.ok(np.ingress.some(peer), 'ranks accept each other on any port');
    assert.ok(np.egress.some(peer), 'ranks dial each other on any port');
    // one rank: no spread, no peer rules
    const single = render('default.yaml', ['--set', 'networkPolicy.enabled=true']);
    const one = podSpec(find(single, 'StatefulSet', 'spark-learner')) as PodSpec & {
      topologySpreadConstraints?: unknown;
    };
    assert.equal(one.topologySpreadConstraints, undefined);
    const np1 = find(single, 'NetworkPolicy', 'spark-learner').spec as { ingress: { ports?: unknown[] }[] };
    assert.ok(np1.ingress.every((r) => r.ports !== undefined));
  });

  it('GPU learner group: GPUs requested and limited, the GPU toleration only where GPUs are, per-component images', () => {
    const objs = render('gpu-learner.yaml');
    const learner = podSpec(find(objs, 'StatefulSet', 'spark-learner'));
    assert.equal(learner.containers[0]!.image, 'ghcr.io/spark-project/spark:0.1.0-cuda');
    assert.equal(learner.containers[0]!.resources?.limits?.['nvidia.com/gpu'], 1);
    assert.equal(learner.containers[0]!.resources?.requests?.['nvidia.com/gpu'], 1);
    assert.deepEqual(
      learner.tolerations?.map((t) => t.key),
      ['nvidia.com/gpu'],
    );
    const rollout = podSpec(find(objs, 'Deployment', 'spark-rollout'));
    assert.equal(rollout.containers[0]!.image, 'registry.example.com:5000/spark:0.1.0-cuda');
    assert.deepEqual(
      rollout.containers[0]!.env?.find((e) => e.name === 'SPARK_THREADS'),
      { name: 'SPARK_THREADS', value: '4' },
    );
    assert.equal(rollout.containers[0]!.resources?.limits?.cpu, undefined);
    const verifier = podSpec(find(objs, 'Deployment', 'spark-verifier'));
    assert.equal(verifier.tolerations, undefined);
    assert.equal(verifier.containers[0]!.image, 'ghcr.io/spark-project/spark:0.1.0');
  });

  it('per-user access: the tokens file mounted from its Secret, the service token, the JWT settings', () => {
    const objs = render('per-user-access.yaml');
    const common = find(objs, 'ConfigMap', 'spark-common').data!;
    assert.equal(common.SPARK_AUTH_TOKENS_FILE, '/etc/spark/auth/tokens.yaml');
    assert.equal(
      common.SPARK_AUTH_JWKS_URL,
      'https://idp.example/realms/spark/protocol/openid-connect/certs',
    );
    assert.equal(common.SPARK_AUTH_JWT_ROLES_CLAIM, 'realm_access.roles');
    assert.equal(common.SPARK_AUTH_SERVICE_TOKEN_FILE, '/etc/spark/auth/service-token');
    assert.equal(common.SPARK_AUTH_JWT_NAME_CLAIM, 'preferred_username');
    for (const [kind, name] of WORKLOADS) {
      const spec = podSpec(find(objs, kind, name)) as PodSpec & {
        volumes: { name: string; secret?: { secretName: string; items?: { key: string; path: string }[] } }[];
        containers: (Container & { volumeMounts: { name: string; mountPath: string; subPath?: string }[] })[];
      };
      const vol = spec.volumes.find((v) => v.name === 'auth-tokens');
      assert.deepEqual(vol?.secret, {
        secretName: 'spark-principals',
        items: [
          { key: 'tokens.yaml', path: 'tokens.yaml' },
          { key: 'service-token', path: 'service-token' },
        ],
      });
      const mount = spec.containers[0]!.volumeMounts.find((m) => m.name === 'auth-tokens');
      assert.equal(mount?.mountPath, '/etc/spark/auth');
      assert.equal(mount?.subPath, undefined, 'a directory mount, so Secret updates reach the pod');
      const env = spec.containers[0]!.env ?? [];
      assert.equal(
        env.find((e) => e.name === 'SPARK_AUTH_SERVICE_TOKEN'),
        undefined,
        'the service token is a re-read file, not an env var fixed at start',
      );
      assert.equal(
        env.find((e) => e.name === 'SPARK_AUTH_TOKEN'),
        undefined,
        'no shared token',
      );
    }
  });

  it('object store: SPARK_STORE_* and the key pair from the Secret for the learner, rollout and coordinator only; the dataset root', () => {
    const configOf = (objs: K8sObject[], name: string) =>
      (find(objs, 'ConfigMap', name) as K8sObject & { data?: Record<string, string> }).data ?? {};
    const objs = render('object-store.yaml');
    for (const name of ['spark-learner', 'spark-rollout', 'spark-coordinator']) {
      assert.deepEqual(
        Object.fromEntries(
          Object.entries(configOf(objs, name)).filter(([k]) => k.startsWith('SPARK_STORE_')),
        ),
        {
          SPARK_STORE_ENDPOINT: 'http://minio.storage:9000',
          SPARK_STORE_BUCKET: 'spark-checkpoints',
          SPARK_STORE_PREFIX: 'prod/',
          SPARK_STORE_REGION: 'us-east-1',
          SPARK_STORE_FORCE_PATH_STYLE: 'true',
        },
        name,
      );
    }
    for (const [kind, name] of WORKLOADS) {
      const env = podSpec(find(objs, kind, name)).containers[0]!.env ?? [];
      const keys = env.filter((e) => e.name.startsWith('AWS_')).map((e) => e.valueFrom?.secretKeyRef);
      const reads = name === 'spark-learner' || name === 'spark-rollout' || name === 'spark-coordinator';
      assert.deepEqual(
        keys,
        reads
          ? [
              { name: 'spark-s3', key: 'access-key-id' },
              { name: 'spark-s3', key: 'secret-access-key' },
            ]
          : [],
        name,
      );
    }
    assert.equal(configOf(objs, 'spark-coordinator').SPARK_DATASET_DIR, '/data/datasets');
    const coord = find(objs, 'Deployment', 'spark-coordinator');
    const volumes = (coord.spec as { template: { spec: { volumes: { name: string; emptyDir?: object }[] } } })
      .template.spec.volumes;
    assert.deepEqual(
      volumes.find((v) => v.name === 'datasets'),
      { name: 'datasets', emptyDir: {} },
    );
    assert.equal(objs.filter((o) => o.kind === 'PersistentVolumeClaim').length, 0);

    const dflt = render('default.yaml');
    assert.equal(configOf(dflt, 'spark-rollout').SPARK_EVAL_PATH_ROOTS, '/data/checkpoints');
    assert.equal(
      Object.keys(configOf(dflt, 'spark-learner')).filter((k) => k.startsWith('SPARK_STORE_')).length,
      0,
    );
    const pvc = find(dflt, 'PersistentVolumeClaim', 'spark-datasets');
    assert.deepEqual((pvc.spec as { accessModes: string[] }).accessModes, ['ReadWriteOnce']);
    const mounts = (
      podSpec(find(dflt, 'Deployment', 'spark-coordinator')).containers[0] as unknown as {
        volumeMounts: { name: string; mountPath: string }[];
      }
    ).volumeMounts;
    assert.ok(mounts.some((m) => m.name === 'datasets' && m.mountPath === '/data/datasets'));
  });

  it('renders the PrometheusRule equal to deploy/prometheus/rules.yaml for the default values', () => {
    const objs = render('default.yaml', ['--set', 'prometheusRule.enabled=true']);
    const rule = find(objs, 'PrometheusRule', 'spark');
    const file = parseYaml(readFileSync(join(repoRoot, 'deploy', 'prometheus', 'rules.yaml'), 'utf8')) as {
      groups: unknown;
    };
    assert.deepEqual((rule.spec as { groups: unknown }).groups, file.groups);
  });

  it('ships a helm test pod that runs spark doctor and spark jobs against the release', () => {
    const r = template([
      '-f',
      join(valuesDir, 'default.yaml'),
      '--show-only',
      'templates/tests/test-doctor.yaml',
    ]);
    assert.equal(r.status, 0, r.err);
    const pod = parseYaml(r.out) as K8sObject & { spec: PodSpec };
    assert.equal(pod.metadata.annotations?.['helm.sh/hook'], 'test');
    const c = pod.spec.containers[0]!;
    assert.match(
      c.args!.join(' '),
      /spark\.mjs doctor && node services\/cli\/bin\/spark\.mjs jobs --limit 1/,
    );
    assert.deepEqual(
      c.env?.map((e) => e.name),
      ['REDIS_URL', 'SPARK_ADDRESS', 'SPARK_AUTH_TOKEN', 'SPARK_THREADS'],
    );
    assert.equal(c.env?.[1]?.value, 'spark-coordinator.spark.svc:50051');
    // per-user credentials only: `spark jobs` with helmTest.tokenSecretKey's token, else doctor alone
    const perUser = (extra: string[]) => {
      const t = template([
        '-f',
        join(valuesDir, 'per-user-access.yaml'),
        '--show-only',
        'templates/tests/test-doctor.yaml',
        ...extra,
      ]);
      assert.equal(t.status, 0, t.err);
      return (parseYaml(t.out) as K8sObject & { spec: PodSpec }).spec.containers[0]!;
    };
    const withToken = perUser(['--set', 'helmTest.tokenSecretKey=helm-test-token']);
    assert.match(withToken.args!.join(' '), /jobs --limit 1/);
    assert.deepEqual(withToken.env?.find((e) => e.name === 'SPARK_AUTH_TOKEN')?.valueFrom, {
      secretKeyRef: { name: 'spark-principals', key: 'helm-test-token' },
    });
    const doctorOnly = perUser([]);
    assert.doesNotMatch(doctorOnly.args!.join(' '), /jobs/);
    assert.equal(
      doctorOnly.env?.find((e) => e.name === 'SPARK_AUTH_TOKEN'),
      undefined,
    );
    assert.ok(
      existsSync(join(repoRoot, 'services', 'cli', 'bin', 'spark.mjs')),
      'the CLI entry point exists',
    );
  });

  it('refuses impossible values with a clear message', () => {
    const cases: [string[], RegExp][] = [
      [[], /need credentials/],
      [['--set', 'auth.token=short'], /at least 16 characters|minLength|auth\/token/],
      [['--set', 'redis.url=http://x'], /redis:\/\/ or rediss:\/\/|redis\/url/],
      [['--set', 'learner.replicas=65'], /learner\.replicas|maximum/],
      [['--set', 'learner.group.topologySpread.whenUnsatisfiable=Maybe'], /whenUnsatisfiable|enum/],
      [['--set', 'coordinator.replicas=2'], /coordinator\.replicas must be 1/],
      [['--set', 'rollout.replicas=0'], /rollout\.replicas must be at least 1/],
      [['--set', 'rollout.autoscaling.enabled=true'], /autoscaling\.prometheusServerAddress/],
      [
        [
          '--set',
          'verifier.autoscaling.enabled=true',
          '--set',
          'autoscaling.prometheusServerAddress=http://p:9090',
          '--set',
          'verifier.autoscaling.minReplicaCount=5',
          '--set',
          'verifier.autoscaling.maxReplicaCount=2',
        ],
        /at least minReplicaCount/,
      ],
      [['--set', 'tls.enabled=true'], /tls\.secretName/],
      [['--set', 'auth.jwt.jwksUrl=https://idp/certs'], /needs auth\.jwt\.issuer and auth\.jwt\.audience/],
      [
        [
          '--set',
          'auth.jwt.jwksUrl=http://idp/certs',
          '--set',
          'auth.jwt.issuer=i',
          '--set',
          'auth.jwt.audience=a',
        ],
        /must be an https:\/\/ URL/,
      ],
      [['--set', 'tls.certManager.enabled=true'], /enable tls\.enabled too/],
      [['--set', 'tls.enabled=true', '--set', 'tls.certManager.enabled=true'], /issuerRef\.name/],
      [['--set', 'redis.bundled.enabled=true'], /redis\.bundled\.password/],
      [
        ['--set', 'redis.bundled.enabled=true', '--set', 'redis.bundled.password=has space in it 0123'],
        /without whitespace/,
      ],
      [
        ['--set', 'redis.bundled.enabled=true', '--set', 'redis.bundled.password=0123456789abcdef'].concat([
          '--set',
          'redis.bundled.resources.limits.memory=2.5Gi',
        ]),
        /cannot read the memory quantity/,
      ],
      [['--set', 'redis.bundled.maxmemoryPercent=80'], /maxmemoryPercent|maximum/],
      [
        ['--set', 'verifier.resources.limits.cpu=null'],
        /verifier has neither resources\.limits\.cpu nor threads/,
      ],
      [
        ['--set', 'prometheusRule.enabled=true', '--set', 'verifier.config.budgetMs=100'],
        /budgetMs 100 is not a bucket/,
      ],
      [['--set', 'learner.gpu.count=-1'], /gpu\.count|minimum/],
      [['--set', 'image.repository=bad image'], /is not repository:tag/],
      [['--set', 'rollout.replicas=two'], /want integer/],
      [['--set', 'unknownKey=1'], /additional properties 'unknownKey' not allowed/],
      [['--set', 'objectStore.enabled=true'], /objectStore\.enabled needs objectStore\.bucket/],
      [['--set', 'objectStore.prefix=no-slash'], /objectStore\.prefix|pattern/],
      [
        ['--set', 'networkPolicy.enabled=true', '--set', 'networkPolicy.externalRedis.ports=null'],
        /externalRedis\.ports/,
      ],
    ];
    const base = ['--set', 'redis.url=redis://r:6379'];
    // per-user credentials without a shared token need the service token for the weight fetch
    const noServiceToken = template([...base, '--set', 'auth.tokensSecret=principals']);
    assert.notEqual(noServiceToken.status, 0);
    assert.match(noServiceToken.err, /set auth\.serviceTokenSecretKey/);
    for (const [args, message] of cases) {
      const withCreds = args.length === 0 ? [] : ['--set', 'auth.token=test-token-0123456789abcdef'];
      const all = [...base, ...withCreds, ...args];
      const r = template(all);
      assert.notEqual(r.status, 0, `helm template ${all.join(' ')} should fail`);
      assert.match(r.err, message, `helm template ${all.join(' ')}`);
    }
  });
});

describe('chart documentation', () => {
  it('lists every value in the chart README and values.schema.json', () => {
    const readme = readFileSync(join(chartDir, 'README.md'), 'utf8');
    const schema = JSON.parse(readFileSync(join(chartDir, 'values.schema.json'), 'utf8')) as SchemaNode;
    interface SchemaNode {
      properties?: Record<string, SchemaNode>;
    }
    const missingReadme: string[] = [];
    const missingSchema: string[] = [];
    const walk = (obj: unknown, path: string[], node: SchemaNode | undefined): void => {
      const isGroup = !!obj && typeof obj === 'object' && !Array.isArray(obj) && !!node?.properties;
      if (path.length && !isGroup) {
        const p = path.join('.');
        const covered = path.some((_, i) => readme.includes(`| \`${path.slice(0, i + 1).join('.')}\` |`));
        if (!covered) missingReadme.push(p);
        if (!node) missingSchema.push(p);
      }
      if (isGroup || path.length === 0)
        for (const [k, v] of Object.entries(obj as Record<string, unknown>))
          walk(v, [...path, k], node?.properties?.[k]);
    };
    walk(readValues(), [], schema);
    assert.deepEqual(missingReadme, [], 'values missing from deploy/helm/spark/README.md');
    assert.deepEqual(missingSchema, [], 'values missing from values.schema.json');
  });
});
