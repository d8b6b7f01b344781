// `spark demo [--out DIR] [--quick]`: the README's main command. Starts a local cluster (like `spark up`),
// submits the built-in demo job (demo-job.ts), shows live progress, then writes and prints the results —
// the before/after-RL table (held-out answer accuracy, pointwise and pairwise judge accuracy, reflection
// success, from the job's EVAL events), the training curves as DIR/curves.svg, every figure as
// DIR/results.json, the table as DIR/results.md — and stops the cluster. Ctrl-C cancels the job and stops
// the cluster. Exit status: 0 when the job succeeded, 1 otherwise (a dead service included).
import { mkdirSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { basename, join, resolve } from 'node:path';

import type { Command } from 'commander';
import type { PresetName } from '@spark/kernels';

import { JobEventType, JobSpec, jobEventTypeToJSON, phaseToJSON, type JobEvent } from '@spark/protocol';

import { followJob, type FollowResult } from '../client/follow.js';
import { JobClient } from '../client/index.js';
import { startLocalCluster, type ChildFailure, type LocalCluster } from '../launcher/index.js';
import {
  computeResults,
  curvePanels,
  formatDiagnosticsTable,
  formatResultsTable,
  type JobResults,
} from '../report/results.js';
import { renderSvg } from '../report/svg.js';
import { DEMO_ROLLOUT_WORKERS, demoJobSpec } from './demo-job.js';
import { intOption, untilSignal } from './up.js';

interface DemoOptions {
  out: string;
  quick?: boolean;
  redisUrl?: string;
  rolloutWorkers: number;
  seed?: number;
}

/** Everything the demo writes, as JSON. */
export function resultsDocument(args: {
  jobId: string;
  spec: JobSpec;
  outcome: FollowResult;
  results: JobResults;
  events: readonly JobEvent[];
  wallSeconds: number;
  /** What computed the run (machineInfo()): a seed's figures repeat only on the same CPU kernels. */
  machine?: Record<string, unknown>;
}): Record<string, unknown> {
  const { outcome, results } = args;
  return {
    jobId: args.jobId,
    ...(args.machine ? { machine: args.machine } : {}),
    state: args.outcome.state,
    message: outcome.status.message,
    wallSeconds: Number(args.wallSeconds.toFixed(1)),
    spec: JobSpec.toJSON(outcome.status.spec ?? args.spec),
    table: results.rows,
    judgeDiagnostics: results.judgeDiagnostics,
    evalColumns: results.columns,
    evals: results.evals,
    phases: args.events
      .filter(
        (e) => phaseToJSON(e.phase) !== 'PHASE_EVAL' && jobEventTypeToJSON(e.type) === 'JOB_EVENT_TYPE_PHASE',
      )
      .map((e) => ({
        seq: e.seq,
        step: e.step,
        phase: phaseToJSON(e.phase)
          .replace(/^PHASE_/, '')
          .toLowerCase(),
        metrics: e.metrics,
      })),
    events: args.events.length,
  };
}

/**
 * The CPU and the native backend's numerics on this machine (the services the demo starts run here too,
 * with this environment): the GEMM path, OpenBLAS's kernel set for this CPU, the thread count, and — for a
 * model of `modelParams` parameters — the sampler's parallel mode. The training trajectory of a seed depends
 * on all of them (docs/results.md "Which machine").
 */
export async function machineInfo(modelParams?: number): Promise<Record<string, unknown>> {
  const cpu = cpus()[0]?.model ?? 'unknown';
  try {
    const { backendInfo, sampleModeFor } = await import('@spark/kernels');
    const sampleMode = modelParams === undefined ? {} : { sampleMode: sampleModeFor(modelParams) };
    return { cpu, cores: availableParallelism(), ...backendInfo(), ...sampleMode };
  } catch (err) {
    return { cpu, cores: availableParallelism(), backendError: (err as Error).message };
  }
}

/**
 * The parameter count of a job's model: a preset's, or the `config.json` of a checkpoint directory;
 * undefined when neither reads (the machine record then leaves the sampling mode out).
 */
export async function modelParams(model: string): Promise<number | undefined> {
  try {
    const k = await import('@spark/kernels');
    const config = k.presetNames().includes(model)
      ? k.presetConfig(model as PresetName)
      : await k.readCheckpointConfig(model);
    return k.validateConfig(config);
  } catch {
    return undefined;
  }
}

/**
 * The environment that makes another machine compute along this run's path (docs/kernels.md
 * "Reproducibility"): the same GEMM path, OpenBLAS kernel set, thread count and sampling mode. `OPENBLAS_CORETYPE` is
 * OpenBLAS's own switch; it works on a CPU that has the instructions of that kernel set (`Haswell`: any AVX2
 * CPU; `SkylakeX`: AVX-512). Undefined when the machine record has no backend (the addon did not load).
 */
export function reproduceEnv(machine: Record<string, unknown> | undefined): string | undefined {
  const gemm = machine?.gemm;
  const threads = machine?.threads;
  if (typeof gemm !== 'string' || typeof threads !== 'number') return undefined;
  const core = machine?.blasCore;
  const path =
    gemm === 'blas' && typeof core === 'string' && /^\w+$/.test(core)
      ? `SPARK_GEMM=blas OPENBLAS_CORETYPE=${core}`
      : `SPARK_GEMM=${gemm}`;
  const mode = machine?.sampleMode;
  const sampling = mode === 'groups' || mode === 'split' ? ` SPARK_SAMPLE_MODE=${mode}` : '';
  return `${path} SPARK_THREADS=${threads}${sampling}`;
}

function machineSection(machine: Record<string, unknown> | undefined): string {
  const env = reproduceEnv(machine);
  if (!machine || !env) return '';
  const core = typeof machine.blasCore === 'string' ? `, OpenBLAS ${machine.blasCore} kernels` : '';
  return (
    `Computed on ${String(machine.cpu)} (GEMM ${String(machine.gemm)}${core}, ${String(machine.threads)} threads). ` +
    `A seed's figures repeat only on the same kernels; to follow this run's path on another machine:\n\n` +
    `\`\`\`\n${env} npm run demo\n\`\`\`\n\n`
  );
}

/** Writes curves.svg, results.json and results.md into `out`; returns the table text. */
export function writeDemoReport(
  out: string,
  args: Parameters<typeof resultsDocument>[0],
): { table: string; files: string[] } {
  mkdirSync(out, { recursive: true });
  const table = formatResultsTable(args.results);
  const svgFile = join(out, 'curves.svg');
  writeFileSync(svgFile, renderSvg(curvePanels(args.events), { title: `Spark demo — job ${args.jobId}` }));
  const jsonFile = join(out, 'results.json');
  writeFileSync(jsonFile, `${JSON.stringify(resultsDocument(args), null, 2)}\n`);
  const mdFile = join(out, 'results.md');
  const diagnostics = formatDiagnosticsTable(args.results);
  writeFileSync(
    mdFile,
    `# Spark demo results (job ${args.jobId}, ${args.outcome.state.toLowerCase()}, ${args.wallSeconds.toFixed(0)} s)\n\n` +
      '```\n' +
      `${table}\n` +
      '```\n\n' +
      (diagnostics ? `Judge diagnostics (docs/evaluation.md):\n\n\`\`\`\n${diagnostics}\n\`\`\`\n\n` : '') +
      machineSection(args.machine) +
      '![training curves](curves.svg)\n',
  );
  return { table, files: [svgFile, jsonFile, mdFile] };
}

export function register(program: Command): void {
  program
    .command('demo')
    .description('run the built-in demo: local cluster, warm-up + SPARK job, results table and curves')
    .option('--out <dir>', 'where results.json, results.md, curves.svg and the cluster logs go', 'out/demo')
    .option('--quick', 'a minutes-long toy version of the same pipeline')
    .option('--redis-url <url>', 'use this Redis instead of a private redis-server (also: REDIS_URL)')
    .option('--rollout-workers <n>', 'rollout worker processes', intOption(1, 16), DEMO_ROLLOUT_WORKERS)
    .option('--seed <n>', 'job seed', intOption(0, 2 ** 31 - 1))
    .action(async (opts: DemoOptions) => {
      const out = resolve(opts.out);
      const started = Date.now();
      const say = (line: string) => process.stdout.write(`spark demo: ${line}\n`);
      const signal = untilSignal();
      const abort = new AbortController();
      void signal.promise.then(() => abort.abort());
      const redisUrl = opts.redisUrl ?? process.env.REDIS_URL;
      say(`starting a local cluster (logs in ${join(out, 'cluster', 'logs')})`);
      let cluster: LocalCluster;
      try {
        cluster = await startLocalCluster({
          dataDir: join(out, 'cluster'),
          ...(redisUrl ? { redisUrl } : {}),
          prefix: `demo-${Date.now().toString(36)}`,
          rolloutWorkers: opts.rolloutWorkers,
          log: say,
          signal: abort.signal,
        });
      } catch (err) {
        signal.dispose();
        throw err;
      }
      const client = new JobClient({ address: cluster.coordinatorAddress, token: null, deadlineMs: 30_000 });
      let exitCode = 1;
      try {
        const spec = demoJobSpec({
          ...(opts.quick ? { quick: true } : {}),
          ...(opts.seed !== undefined ? { seed: opts.seed } : {}),
        });
        const { jobId } = await client.submit(spec);
        say(
          `submitted job ${jobId} (${spec.model} model, ${spec.warmupSteps} warm-up steps, ${spec.maxSteps} SPARK steps)`,
        );
        const outcome = await Promise.race([
          followJob(client, jobId).then((r) => ({ kind: 'done' as const, r })),
          cluster.failure.then((f) => ({ kind: 'failure' as const, f })),
          signal.promise.then((sig) => ({ kind: 'signal' as const, sig })),
        ]);
        if (outcome.kind === 'failure') {
          const f: ChildFailure = outcome.f;
          process.stderr.write(
            `spark demo: ${f.name} died unexpectedly (${f.signal ?? `status ${f.code}`}); stopping.\nlast log lines of ${f.name}:\n${f.logTail}\n`,
          );
          return;
        }
        if (outcome.kind === 'signal') {
          say(`${outcome.sig}: cancelling job ${jobId} and stopping the cluster`);
          await client.cancel(jobId).catch(() => undefined);
          return;
        }
        const r = outcome.r;
        const results = computeResults(r.events);
        const wallSeconds = (Date.now() - started) / 1000;
        const machine = await machineInfo(await modelParams(spec.model));
        const { table, files } = writeDemoReport(out, {
          jobId,
          spec,
          outcome: r,
          results,
          events: r.events,
          wallSeconds,
          machine,
        });
        const diagnostics = formatDiagnosticsTable(results);
        process.stdout.write(`\n${table}\n\n${diagnostics ? `${diagnostics}\n\n` : ''}`);
        say(
          `job ${jobId} ${r.state.toLowerCase()}${r.status.message ? `: ${r.status.message}` : ''} in ${wallSeconds.toFixed(0)} s`,
        );
        say(`wrote ${files.join(', ')}`);
        const env = reproduceEnv(machine);
        if (env) say(`computed with ${env} (set these to follow this run's path on another machine)`);
        const ckpts = r.events
          .filter((e) => e.type === JobEventType.JOB_EVENT_TYPE_CHECKPOINT)
          .map((e) => e.message);
        const base = ckpts.find((p) => basename(p) === 'warmup');
        const last = ckpts.at(-1);
        if (base && base !== last) say(`checkpoint after warm-up (the base model): ${base}`);
        if (last) say(`final checkpoint: ${last} (try: spark eval ${last} --reflect)`);
        exitCode = r.state === 'SUCCEEDED' ? 0 : 1;
      } finally {
        signal.dispose();
        client.close();
        say('stopping the cluster');
        await cluster.stop();
        process.exitCode = exitCode;
      }
    });
}
