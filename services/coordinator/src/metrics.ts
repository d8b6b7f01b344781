// The coordinator's Prometheus metrics (`spark_coordinator_*`). Labels are low-cardinality only (state,
// phase, kind, style, role, reason) — never job ids. Jobs by state, queue depths per role and the policy
// version lag are computed when scraped from what the coordinator is running.
import { ServiceMetrics } from '@spark/runtime/metrics';
import type { QueueRole } from '@spark/contract';
import { JobState, jobStateToJSON } from '@spark/protocol';

/** What collect() asks the coordinator for at scrape time. */
export interface MetricsSource {
  /** Counts of jobs by state (the newest jobs). */
  jobsByState(): Promise<Map<JobState, number>>;
  /** Waiting + active tasks per queue role, summed over the running jobs. */
  queueDepths(): Promise<Record<QueueRole, number>>;
  /** The largest (expected − published) policy version gap over the running jobs. */
  policyVersionLag(): Promise<number>;
}

const STATES = [
  JobState.JOB_STATE_QUEUED,
  JobState.JOB_STATE_RUNNING,
  JobState.JOB_STATE_SUCCEEDED,
  JobState.JOB_STATE_FAILED,
  JobState.JOB_STATE_CANCELLED,
];
const ROLES: readonly QueueRole[] = ['rollout', 'verify', 'synthesis', 'learn'];

export class CoordinatorMetrics {
  readonly service = new ServiceMetrics('coordinator');
  private source: MetricsSource | null = null;

  private readonly steps = this.service.counter({
    name: 'steps_total',
    help: 'RL training steps completed, over all jobs',
  });
  private readonly phaseSeconds = this.service.histogram<'phase'>({
    name: 'phase_seconds',
    help: 'Wall time of a job phase (warmup, policy, reward, eval), sampling to update',
    labelNames: ['phase'],
    buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900],
  });
  private readonly reward = this.service.gauge<'phase' | 'kind'>({
    name: 'reward_ratio',
    help: 'Mean verifiable reward of the last phase, per sample kind',
    labelNames: ['phase', 'kind'],
  });
  private readonly evalAccuracy = this.service.gauge<'kind'>({
    name: 'eval_accuracy_ratio',
    help: 'Held-out accuracy of the last evaluation, per item kind',
    labelNames: ['kind'],
  });
  private readonly judgeAccuracy = this.service.gauge<'style'>({
    name: 'judge_accuracy_ratio',
    help: 'Held-out judge accuracy of the last evaluation, per judge style',
    labelNames: ['style'],
  });
  private readonly errors = this.service.counter<'reason'>({
    name: 'errors_total',
    help: 'Job failures and driver errors, by reason',
    labelNames: ['reason'],
  });

  constructor() {
    const source = (): MetricsSource | null => this.source;
    this.service.gauge<'state'>({
      name: 'jobs',
      help: 'Jobs by state (the newest 1000 jobs)',
      labelNames: ['state'],
      async collect() {
        const counts = (await source()?.jobsByState()) ?? new Map<JobState, number>();
        for (const s of STATES)
          this.set({ state: jobStateToJSON(s).replace('JOB_STATE_', '').toLowerCase() }, counts.get(s) ?? 0);
      },
    });
    this.service.gauge<'role'>({
      name: 'queue_depth_tasks',
      help: 'Waiting and active tasks in the running jobs’ queues, per role',
      labelNames: ['role'],
      async collect() {
        const depths = await source()?.queueDepths();
        for (const r of ROLES) this.set({ role: r }, depths?.[r] ?? 0);
      },
    });
    this.service.gauge({
      name: 'policy_version_lag_versions',
      help: 'Largest gap between the policy version a running job expects and the one its learner published',
      async collect() {
        this.set((await source()?.policyVersionLag()) ?? 0);
      },
    });
  }

  /** Where the scrape-time gauges read from (set once the coordinator is up). */
  setSource(source: MetricsSource): void {
    this.source = source;
  }

  stepDone(): void {
    this.steps.inc();
  }

  phase(phase: string, seconds: number): void {
    this.phaseSeconds.observe({ phase }, seconds);
  }

  rewardOf(phase: string, kind: string, value: number): void {
    this.reward.set({ phase, kind }, value);
  }

  evalOf(kind: string, value: number): void {
    this.evalAccuracy.set({ kind }, value);
  }

  judgeOf(style: string, value: number): void {
    this.judgeAccuracy.set({ style }, value);
  }

  error(reason: string): void {
    this.errors.inc({ reason });
  }
}
