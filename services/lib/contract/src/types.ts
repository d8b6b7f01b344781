// Payloads exchanged over the per-job BullMQ queues and stored in Redis (JSON). Ids are deterministic so
// that at-least-once delivery is harmless: re-running a task rewrites the same hash field.

/** The phase a piece of work belongs to. `eval` is a held-out evaluation pass (greedy, G = 1). */
export type PhaseName = 'warmup' | 'policy' | 'reward' | 'eval';

/** What a prompt asks for, and so how its response is rewarded. */
export type KindName = 'problem' | 'pointwise' | 'pairwise' | 'reflection';

/** Which algorithm a job runs (spark-method.md §1; the two ablations for comparison). */
export type AlgorithmName = 'spark' | 'grpo' | 'grpo-judge';

/** One prompt with its label. `text` is the full user message (instruction included). */
export interface PromptItem {
  /** Unique within the job and phase, e.g. "p-<problemId>" or "j-<step>-<groupId>". */
  readonly promptId: string;
  readonly kind: KindName;
  readonly text: string;
  /** Gold answer (problems, reflections) or judge verdict "Yes" | "No" | "A" | "B". */
  readonly label: string;
  /** For recycled prompts: the policy-phase group it came from; null otherwise. */
  readonly sourceGroupId: string | null;
  /** For problems: the bare question (recycling templates embed it); null for other kinds. */
  readonly question: string | null;
  /** Free-form tags for metrics, e.g. judge style "pointwise-yesno", reflection mode "cot". */
  readonly tags: readonly string[];
}

/** Sampling settings of a rollout task. temperature 0 = greedy. */
export interface SamplingParams {
  readonly temperature: number;
  readonly topP: number;
  readonly maxNewTokens: number;
  /** Base seed; the per-group seed is derived from it and the group id (see groupSeed). */
  readonly seed: number;
}

/**
 * Rollout queue payload: sample `groupSize` responses for each prompt with policy `policyVersion`.
 * A shard holds several prompts so the sampler runs one large batch.
 */
export interface RolloutTask {
  readonly jobId: string;
  readonly step: number;
  readonly phase: PhaseName;
  /** "<step>/<phase>/<shardIndex>" — the BullMQ job id on the rollout queue. */
  readonly shardId: string;
  /** The exact policy version to sample with; older versions are never used. */
  readonly policyVersion: number;
  readonly groupSize: number;
  readonly sampling: SamplingParams;
  readonly prompts: readonly PromptItem[];
}

/** One sampled response. */
export interface SampledResponse {
  readonly text: string;
  /** Response token ids (stop token included when one ended it). */
  readonly tokens: readonly number[];
  /** The sampler's log-prob per response token (diagnostics; the learner recomputes its own). */
  readonly logprobs: readonly number[];
  readonly finish: 'stop' | 'length';
}

/** A group: the G responses to one prompt. */
export interface SampledGroup {
  /** "<step>/<phase>/<promptId>" */
  readonly groupId: string;
  readonly prompt: PromptItem;
  /** Prompt token ids as fed to the model (chat-rendered). */
  readonly promptTokens: readonly number[];
  readonly policyVersion: number;
  readonly responses: readonly SampledResponse[];
}

/** Verify queue payload: one rollout shard's groups. BullMQ job id = the shard id. */
export interface VerifyTask {
  readonly jobId: string;
  readonly step: number;
  readonly phase: PhaseName;
  readonly shardId: string;
  readonly groups: readonly SampledGroup[];
}

/** A response with its verifiable reward. */
export interface VerifiedResponse extends SampledResponse {
  readonly reward: 0 | 1;
  /** The extracted answer or verdict, null when none. */
  readonly extracted: string | null;
  /** Which rule matched, or why it failed. */
  readonly reason: string;
}

/** A verified group; stored in the phase's group hash (field = groupId). */
export interface VerifiedGroup {
  readonly groupId: string;
  readonly prompt: PromptItem;
  readonly promptTokens: readonly number[];
  readonly policyVersion: number;
  readonly responses: readonly VerifiedResponse[];
}

/** Optimisation settings of a GRPO/SFT update (spark-method.md §1). */
export interface LearnHyper {
  readonly learningRate: number;
  readonly clipEpsilon: number;
  readonly klCoefficient: number;
  /** Sequences per optimizer step (the reference: 64 samples). */
  readonly miniBatchSize: number;
  /** Sequences per forward/backward micro-batch (gradient accumulation inside a minibatch). */
  readonly microBatchSize: number;
  readonly maxGradNorm: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly weightDecay: number;
}

/** Learn queue payload. BullMQ job id = "<step>/<phase>" (one update per phase, exactly once). */
export interface LearnTask {
  readonly jobId: string;
  readonly step: number;
  /**
   * warmup (SFT), policy or reward (GRPO), or checkpoint: no update, only a checkpoint of the current
   * weights (the end of a job whose last step trained nothing, e.g. grpo-judge without a reward phase).
   */
  readonly phase: 'warmup' | 'policy' | 'reward' | 'checkpoint';
  /** The policy version the groups were sampled with; the learner must be at exactly this version. */
  readonly policyVersion: number;
  /** GRPO phases: the group ids to train on, read from the phase's group hash. Warm-up: empty. */
  readonly groupIds: readonly string[];
  readonly hyper: LearnHyper;
  /** Warm-up only: supervised examples (prompt text + target text), already chosen by the coordinator. */
  readonly sft: readonly { readonly prompt: string; readonly target: string }[];
  /**
   * The coordinator's estimate of the RL optimizer steps of the whole job (policy + reward phases), the
   * horizon of the cosine lr schedule. Absent → the learner uses a constant lr for RL phases.
   */
  readonly totalOptimizerSteps?: number;
  /** The last update of the job: the learner writes a checkpoint after it (whatever the interval). */
  readonly final?: boolean;
}

/** What an update reports; stored under learnResultKey so a redelivered task returns it unchanged. */
export interface LearnResult {
  readonly policyVersion: number;
  readonly optimizerSteps: number;
  readonly sequences: number;
  readonly tokens: number;
  readonly loss: number;
  readonly kl: number;
  readonly clipFraction: number;
  readonly gradNorm: number;
  /** Groups refused because they were sampled with another policy version. */
  readonly staleGroups: number;
  readonly seconds: { readonly logprobs: number; readonly train: number; readonly publish: number };
  /** The learning rate of the update's last optimizer step. */
  readonly learningRate?: number;
  /** Directory of the checkpoint written after this update, when one was (the coordinator reports it). */
  readonly checkpointPath?: string;
  /** Sequences left out: empty responses, or longer than the model's context. */
  readonly skippedSequences?: number;
}

/** Synthesis queue payload: recycle one policy phase. BullMQ job id = synthesisTaskId(step) = "synth-<step>". */
export interface SynthesisTask {
  readonly jobId: string;
  readonly step: number;
  readonly epoch: number;
  readonly batchSize: number;
  readonly seed: number;
  readonly judge: boolean;
  readonly reflection: boolean;
  readonly groupIds: readonly string[];
  /** Judge sub-switches (default true): pointwise items, pairwise items. Off → that style is never made. */
  readonly pointwise?: boolean;
  readonly pairwise?: boolean;
  /** Keep equal numbers of correct- and incorrect-target pointwise items (default false). */
  readonly balanceLabels?: boolean;
  /** Template wording for recycled prompts (default: the service's config, "short"). */
  readonly templateVariant?: 'full' | 'short';
  /** Longest wrong response shown in a CoT reflection, in chars (default: the service's config). */
  readonly maxCotChars?: number;
}

/** What recycling did; stored under synthesisResultKey (idempotent). */
export interface SynthesisResult {
  readonly judgeItems: number;
  readonly reflectionItems: number;
  readonly bufferLength: number;
  /** The reward-phase batch released for this step (B items popped from the FIFO), or null. */
  readonly released: readonly PromptItem[] | null;
  /** Oldest buffer items dropped this step because the buffer was over its bound. */
  readonly dropped?: number;
  /** True when this step started a new epoch and cleared the buffer first. */
  readonly epochCleared?: boolean;
}

/** Deterministic per-group sampling seed (32-bit), so re-sampling a redelivered shard is reproducible. */
export function groupSeed(baseSeed: number, groupId: string): number {
  let h = (baseSeed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < groupId.length; i++) {
    h ^= groupId.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

/** "<step>/<phase>/<promptId>" */
export function groupIdOf(step: number, phase: PhaseName, promptId: string): string {
  return `${step}/${phase}/${promptId}`;
}

/**
 * eval-generate queue payload (JobService.Generate): greedy outputs of the checkpoint at `checkpoint` (an
 * absolute path the rollout workers can read) for each prompt, rendered as rollouts render them.
 */
export interface GenerateTask {
  readonly checkpoint: string;
  readonly prompts: readonly string[];
  readonly maxNewTokens: number;
  /** "" = the checkpoint's tokenizer.json, else char; "char"; or a tokenizer directory. */
  readonly tokenizer: string;
}

/** What a rollout worker returns for a GenerateTask: the outputs, or why the request cannot be served. */
export type GenerateTaskResult =
  | {
      readonly outputs: readonly string[];
      readonly tooLong: number;
      readonly outputTokens: number;
      /** "host:pid" of the worker. */
      readonly worker: string;
      /** The model directory loaded. */
      readonly checkpointDir: string;
    }
  | {
      /** A request error (not retried): the checkpoint is missing or unusable, or the request is bad. */
      readonly error: { readonly code: 'not-found' | 'invalid-argument'; readonly message: string };
    };
