// The learner's Prometheus metrics (`spark_learner_*`). Labels are low-cardinality: the phase only, never
// a job or sample id. Gauges hold the figures of the most recent update (of whichever job ran it).
import type { ServiceMetrics } from '@spark/runtime/metrics';

type Counter = ReturnType<ServiceMetrics['counter']>;
type Gauge = ReturnType<ServiceMetrics['gauge']>;
type Histogram = ReturnType<ServiceMetrics['histogram']>;

export interface LearnerMetrics {
  readonly updates: Counter;
  readonly replayedUpdates: Counter;
  readonly optimizerSteps: Counter;
  readonly sequences: Counter;
  readonly tokens: Counter;
  readonly staleGroups: Counter;
  readonly skippedSequences: Counter;
  readonly updateSeconds: Histogram;
  readonly logprobSeconds: Histogram;
  readonly policyVersion: Gauge;
  readonly learningRate: Gauge;
  readonly loss: Gauge;
  readonly kl: Gauge;
  readonly clipFraction: Gauge;
  readonly gradNorm: Gauge;
  readonly weightBytesSent: Counter;
  readonly weightStreamSeconds: Histogram;
  readonly weightStreams: Counter;
  readonly modelsLoaded: Gauge;
  readonly checkpoints: Counter;
  readonly checkpointSeconds: Histogram;
  readonly collectiveSeconds: Histogram;
  readonly groupFormations: Counter;
  readonly groupDisagreements: Counter;
}

export function createLearnerMetrics(m: ServiceMetrics): LearnerMetrics {
  const phase = ['phase'] as const;
  return {
    updates: m.counter({
      name: 'updates_total',
      help: 'Learner updates (one per LearnTask trained)',
      labelNames: phase,
    }),
    replayedUpdates: m.counter({
      name: 'replayed_updates_total',
      help: 'Redelivered LearnTasks answered from the stored result without training',
    }),
    optimizerSteps: m.counter({
      name: 'optimizer_steps_total',
      help: 'AdamW steps taken',
      labelNames: phase,
    }),
    sequences: m.counter({
      name: 'sequences_trained_total',
      help: 'Sequences trained on',
      labelNames: phase,
    }),
    tokens: m.counter({
      name: 'tokens_trained_total',
      help: 'Response tokens trained on',
      labelNames: phase,
    }),
    staleGroups: m.counter({
      name: 'stale_groups_total',
      help: 'Groups refused because they were sampled with another policy version',
    }),
    skippedSequences: m.counter({
      name: 'skipped_sequences_total',
      help: 'Sequences left out (empty response, invalid token, longer than the context)',
    }),
    updateSeconds: m.histogram({
      name: 'update_seconds',
      help: 'Wall time of one update (log-probs, training, publishing)',
      labelNames: phase,
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
    }),
    logprobSeconds: m.histogram({
      name: 'logprob_seconds',
      help: 'Recomputing old and reference log-probs of one GRPO update',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    }),
    policyVersion: m.gauge({ name: 'policy_version', help: 'Policy version after the latest update' }),
    learningRate: m.gauge({
      name: 'learning_rate_ratio',
      help: 'Learning rate of the latest optimizer step',
      labelNames: phase,
    }),
    loss: m.gauge({ name: 'loss_ratio', help: 'Token-mean loss of the latest update', labelNames: phase }),
    kl: m.gauge({
      name: 'kl_ratio',
      help: 'Token-mean k3 KL to the reference of the latest update',
      labelNames: phase,
    }),
    clipFraction: m.gauge({
      name: 'clip_fraction_ratio',
      help: 'Fraction of tokens clipped in the latest update',
      labelNames: phase,
    }),
    gradNorm: m.gauge({
      name: 'grad_norm_ratio',
      help: 'Mean pre-clip global gradient norm of the latest update',
      labelNames: phase,
    }),
    weightBytesSent: m.counter({
      name: 'weight_bytes_sent_total',
      help: 'Parameter bytes streamed by GetPolicy',
    }),
    weightStreamSeconds: m.histogram({
      name: 'weight_stream_seconds',
      help: 'Duration of one GetPolicy stream',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    }),
    weightStreams: m.counter({
      name: 'weight_streams_total',
      help: 'GetPolicy calls by outcome',
      labelNames: ['outcome'] as const,
    }),
    modelsLoaded: m.gauge({ name: 'loaded_models', help: 'Job models held in memory' }),
    collectiveSeconds: m.histogram({
      name: 'collective_seconds',
      help: "Time of one update in the learner group's gradient collectives (all-reduce or ZeRO-1 step and the loss sums)",
      buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    }),
    groupFormations: m.counter({
      name: 'group_formations_total',
      help: "Times this rank formed or re-formed a job's learner group (a new generation)",
    }),
    groupDisagreements: m.counter({
      name: 'group_disagreements_total',
      help: 'Updates failed because ranks of the learner group disagreed on the policy version or weights',
    }),
    checkpoints: m.counter({ name: 'checkpoints_total', help: 'Checkpoints written' }),
    checkpointSeconds: m.histogram({
      name: 'checkpoint_seconds',
      help: 'Writing one checkpoint',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    }),
  };
}
