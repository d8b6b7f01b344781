// Payloads exchanged over the per-job BullMQ queues and stored in Redis (JSON), each defined ONCE as a zod
// schema; the TypeScript types are inferred from the schemas. Every reader parses through the payload's
// parse function (parseRolloutTask, parseVerifiedGroup, …), which throws InvalidArgumentError listing
// every bad field path; workers turn that into BullMQ's UnrecoverableError. The bounds are the ones the
// system itself produces (the coordinator's spec limits, the consumers' historical caps), so a schema
// never rejects real traffic and nothing is unbounded. Ids are deterministic so that at-least-once delivery
// is harmless: re-running a task rewrites the same hash field.
import { z } from 'zod';

import { GENERATE_LIMITS, JOB_ID_PATTERN } from './keys.js';
import { parseWith } from './parse.js';

/** Deeply readonly view of a parsed payload (type level only: parsed values are not frozen). */
export type DeepReadonly<T> = T extends (infer U)[]
  ? readonly DeepReadonly<U>[]
  : T extends object
    ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
    : T;

/** Bounds every payload schema enforces (the limits the consumers have always checked). */
export const PAYLOAD_LIMITS = Object.freeze({
  /** Prompts per rollout shard. */
  maxPromptsPerShard: 4_096,
  /** Responses per prompt (the job spec allows 2…256). */
  maxGroupSize: 256,
  /** Characters of a prompt's text, label and question (the rollout workers' cap). */
  maxPromptChars: 64 * 1024,
  /** Characters of a prompt id, a group id, a shard id. */
  maxPromptIdChars: 1_024,
  maxGroupIdChars: 2_048,
  maxShardIdChars: 256,
  /** Tags per prompt, characters per tag. */
  maxTags: 64,
  maxTagChars: 256,
  /** Groups per verify task (a shard's prompts). */
  maxGroupsPerVerifyTask: 4_096,
  /** Responses per sampled group (the verifier's cap). */
  maxResponsesPerGroup: 1_024,
  /** Characters of a response, an extracted answer, a verifier reason, an SFT example's text. */
  maxTextChars: 1 << 20,
  /** Token ids / log-probs per sequence. */
  maxTokens: 1 << 20,
  /** Group ids of a learn or synthesis task, SFT examples of a learn task. */
  maxGroupsPerStep: 65_536,
  /** Prompts released by one synthesis step (a batch) and examples of a warm-up step. */
  maxBatch: 1_000_000,
  /** Steps, epochs (generous: the spec allows 10 000 000 steps). */
  maxStep: 1e9,
  /** Policy versions are uint32 on the wire (PolicyService). */
  maxPolicyVersion: 0xffffffff,
  /** Sampling: max new tokens of a rollout task (the workers clamp to their own limit). */
  maxNewTokens: 1_000_000,
  /** Mini/micro batch sizes of an update (the learner's per-task sequence cap). */
  maxBatchSize: 1_000_000,
  /** Characters of a file-system path (checkpoints). */
  maxPathChars: 4_096,
  /** Characters of an error message carried in a result. */
  maxMessageChars: 64 * 1024,
});
const P = PAYLOAD_LIMITS;

const int = (min: number, max: number) => z.number().int().min(min).max(max);
const count = () => int(0, Number.MAX_SAFE_INTEGER);
/** A float statistic: JSON has no NaN/±Infinity (JSON.stringify writes null), so null reads back as NaN. */
const stat = () => z.union([z.number(), z.null().transform(() => Number.NaN)]);

export const PhaseNameSchema = z.enum(['warmup', 'policy', 'reward', 'eval']);
/** The phase a piece of work belongs to. `eval` is a held-out evaluation pass (greedy, G = 1). */
export type PhaseName = z.infer<typeof PhaseNameSchema>;

export const KindNameSchema = z.enum(['problem', 'pointwise', 'pairwise', 'reflection']);
/** What a prompt asks for, and so how its response is rewarded. */
export type KindName = z.infer<typeof KindNameSchema>;

/** Which algorithm a job runs (docs/method.md "One step"; the two ablations for comparison). */
export type AlgorithmName = 'spark' | 'grpo' | 'grpo-judge';

const jobId = () => z.string().regex(JOB_ID_PATTERN, 'must be a job id ([a-z0-9][a-z0-9-]{0,62})');
const step = () => int(0, P.maxStep);
const policyVersion = () => int(0, P.maxPolicyVersion);
const tokenIds = () => z.array(int(0, 0xffffffff)).max(P.maxTokens);

/** One prompt with its label. `text` is the full user message (instruction included). */
export const PromptItemSchema = z.object({
  /** Unique within the job and phase, e.g. "p-<problemId>" or "j-<step>-<groupId>". */
  promptId: z.string().min(1).max(P.maxPromptIdChars),
  kind: KindNameSchema,
  text: z.string().max(P.maxPromptChars),
  /** Gold answer (problems, reflections) or judge verdict "Yes" | "No" | "A" | "B". */
  label: z.string().max(P.maxPromptChars),
  /** For recycled prompts: the policy-phase group it came from; null otherwise. */
  sourceGroupId: z.string().max(P.maxGroupIdChars).nullable(),
  /** For problems: the bare question (recycling templates embed it); null for other kinds. */
  question: z.string().max(P.maxPromptChars).nullable(),
  /** Free-form tags for metrics, e.g. judge style "pointwise-yesno", reflection mode "cot". */
  tags: z.array(z.string().max(P.maxTagChars)).max(P.maxTags),
});
export type PromptItem = DeepReadonly<z.infer<typeof PromptItemSchema>>;
export const parsePromptItem = (data: unknown): PromptItem => parseWith(PromptItemSchema, 'PromptItem', data);

/** Sampling settings of a rollout task. temperature 0 = greedy. */
export const SamplingParamsSchema = z.object({
  temperature: z.number().min(0).max(100),
  topP: z.number().gt(0).max(1),
  maxNewTokens: int(1, P.maxNewTokens),
  /** Base seed; the per-group seed is derived from it and the group id (see groupSeed). */
  seed: int(0, Number.MAX_SAFE_INTEGER),
});
export type SamplingParams = DeepReadonly<z.infer<typeof SamplingParamsSchema>>;
export const parseSamplingParams = (data: unknown): SamplingParams =>
  parseWith(SamplingParamsSchema, 'SamplingParams', data);

/**
 * Rollout queue payload: sample `groupSize` responses for each prompt with policy `policyVersion`.
 * A shard holds several prompts so the sampler runs one large batch.
 */
export const RolloutTaskSchema = z.object({
  jobId: jobId(),
  step: step(),
  phase: PhaseNameSchema,
  /** "<step>/<phase>/<shardIndex>" — the BullMQ job id on the rollout queue. */
  shardId: z.string().min(1).max(P.maxShardIdChars),
  /** The exact policy version to sample with; older versions are never used. */
  policyVersion: policyVersion(),
  groupSize: int(1, P.maxGroupSize),
  sampling: SamplingParamsSchema,
  prompts: z.array(PromptItemSchema).min(1).max(P.maxPromptsPerShard),
});
export type RolloutTask = DeepReadonly<z.infer<typeof RolloutTaskSchema>>;
export const parseRolloutTask = (data: unknown): RolloutTask =>
  parseWith(RolloutTaskSchema, 'RolloutTask', data);

/** One sampled response. */
export const SampledResponseSchema = z.object({
  text: z.string().max(P.maxTextChars),
  /** Response token ids (stop token included when one ended it). */
  tokens: tokenIds(),
  /** The sampler's log-prob per response token (diagnostics; the learner recomputes its own). */
  logprobs: z.array(z.number()).max(P.maxTokens),
  finish: z.enum(['stop', 'length']),
});
export type SampledResponse = DeepReadonly<z.infer<typeof SampledResponseSchema>>;
export const parseSampledResponse = (data: unknown): SampledResponse =>
  parseWith(SampledResponseSchema, 'SampledResponse', data);

const groupFields = {
  /** "<step>/<phase>/<promptId>" */
  groupId: z.string().min(1).max(P.maxGroupIdChars),
  prompt: PromptItemSchema,
  /** Prompt token ids as fed to the model (chat-rendered). */
  promptTokens: tokenIds(),
  policyVersion: policyVersion(),
};

/** A group: the G responses to one prompt. */
export const SampledGroupSchema = z.object({
  ...groupFields,
  responses: z.array(SampledResponseSchema).max(P.maxResponsesPerGroup),
});
export type SampledGroup = DeepReadonly<z.infer<typeof SampledGroupSchema>>;
export const parseSampledGroup = (data: unknown): SampledGroup =>
  parseWith(SampledGroupSchema, 'SampledGroup', data);

/** Verify queue payload: one rollout shard's groups. BullMQ job id = the shard id. */
export const VerifyTaskSchema = z.object({
  jobId: jobId(),
  step: step(),
  phase: PhaseNameSchema,
  shardId: z.string().min(1).max(P.maxShardIdChars),
  groups: z.array(SampledGroupSchema).max(P.maxGroupsPerVerifyTask),
});
export type VerifyTask = DeepReadonly<z.infer<typeof VerifyTaskSchema>>;
export const parseVerifyTask = (data: unknown): VerifyTask => parseWith(VerifyTaskSchema, 'VerifyTask', data);

/** A response with its verifiable reward. */
export const VerifiedResponseSchema = SampledResponseSchema.extend({
  reward: z.union([z.literal(0), z.literal(1)]),
  /** The extracted answer or verdict, null when none. */
  extracted: z.string().max(P.maxTextChars).nullable(),
  /** Which rule matched, or why it failed. */
  reason: z.string().max(P.maxTextChars),
});
export type VerifiedResponse = DeepReadonly<z.infer<typeof VerifiedResponseSchema>>;
export const parseVerifiedResponse = (data: unknown): VerifiedResponse =>
  parseWith(VerifiedResponseSchema, 'VerifiedResponse', data);

/** A verified group; stored in the phase's group hash (field = groupId). */
export const VerifiedGroupSchema = z.object({
  ...groupFields,
  responses: z.array(VerifiedResponseSchema).max(P.maxResponsesPerGroup),
});
export type VerifiedGroup = DeepReadonly<z.infer<typeof VerifiedGroupSchema>>;
export const parseVerifiedGroup = (data: unknown): VerifiedGroup =>
  parseWith(VerifiedGroupSchema, 'VerifiedGroup', data);

/** Optimisation settings of a GRPO/SFT update (docs/method.md "One step"). */
export const LearnHyperSchema = z.object({
  learningRate: z.number().min(0),
  clipEpsilon: z.number().gt(0).lt(1),
  klCoefficient: z.number().min(0),
  /** Sequences per optimizer step (the reference: 64 samples). */
  miniBatchSize: int(1, P.maxBatchSize),
  /** Sequences per forward/backward micro-batch (gradient accumulation inside a minibatch). */
  microBatchSize: int(1, P.maxBatchSize),
  maxGradNorm: z.number().min(0),
  beta1: z.number().min(0).lt(1),
  beta2: z.number().min(0).lt(1),
  weightDecay: z.number().min(0),
});
export type LearnHyper = DeepReadonly<z.infer<typeof LearnHyperSchema>>;
export const parseLearnHyper = (data: unknown): LearnHyper => parseWith(LearnHyperSchema, 'LearnHyper', data);

/** Learn queue payload. BullMQ job id = "<step>/<phase>" (one update per phase, exactly once). */
export const LearnTaskSchema = z.object({
  jobId: jobId(),
  step: step(),
  /**
   * warmup (SFT), policy or reward (GRPO), or checkpoint: no update, only a checkpoint of the current
   * weights (the end of a job whose last step trained nothing, e.g. grpo-judge without a reward phase).
   */
  phase: z.enum(['warmup', 'policy', 'reward', 'checkpoint']),
  /** The policy version the groups were sampled with; the learner must be at exactly this version. */
  policyVersion: policyVersion(),
  /** GRPO phases: the group ids to train on, read from the phase's group hash. Warm-up: empty. */
  groupIds: z.array(z.string().min(1).max(P.maxGroupIdChars)).max(P.maxGroupsPerStep),
  hyper: LearnHyperSchema,
  /** Warm-up only: supervised examples (prompt text + target text), already chosen by the coordinator. */
  sft: z
    .array(z.object({ prompt: z.string().max(P.maxTextChars), target: z.string().max(P.maxTextChars) }))
    .max(P.maxGroupsPerStep),
  /**
   * The coordinator's estimate of the RL optimizer steps of the whole job (policy + reward phases), the
   * horizon of the cosine lr schedule. Absent → the learner uses a constant lr for RL phases.
   */
  totalOptimizerSteps: count().exactOptional(),
  /** The last update of the job: the learner writes a checkpoint after it (whatever the interval). */
  final: z.boolean().exactOptional(),
  /**
   * A reward phase of the same step follows this policy update: no interval checkpoint after it, so every
   * checkpoint marks the end of a step (where the coordinator can resume after a learner restart).
   */
  midStep: z.boolean().exactOptional(),
});
export type LearnTask = DeepReadonly<z.infer<typeof LearnTaskSchema>>;
export const parseLearnTask = (data: unknown): LearnTask => parseWith(LearnTaskSchema, 'LearnTask', data);

/** What an update reports; stored under learnResultKey so a redelivered task returns it unchanged. */
export const LearnResultSchema = z.object({
  policyVersion: policyVersion(),
  optimizerSteps: count(),
  sequences: count(),
  tokens: count(),
  loss: stat(),
  kl: stat(),
  clipFraction: stat(),
  gradNorm: stat(),
  /** Groups refused because they were sampled with another policy version. */
  staleGroups: count(),
  seconds: z.object({ logprobs: stat(), train: stat(), publish: stat() }),
  /** The learning rate of the update's last optimizer step. */
  learningRate: stat().exactOptional(),
  /** Directory of the checkpoint written after this update, when one was (the coordinator reports it). */
  checkpointPath: z.string().min(1).max(P.maxPathChars).exactOptional(),
  /** Sequences left out: empty responses, or longer than the model's context. */
  skippedSequences: count().exactOptional(),
});
export type LearnResult = DeepReadonly<z.infer<typeof LearnResultSchema>>;
export const parseLearnResult = (data: unknown): LearnResult =>
  parseWith(LearnResultSchema, 'LearnResult', data);

/** Synthesis queue payload: recycle one policy phase. BullMQ job id = synthesisTaskId(step) = "synth-<step>". */
export const SynthesisTaskSchema = z.strictObject({
  jobId: jobId(),
  step: step(),
  epoch: int(0, P.maxStep),
  batchSize: int(1, P.maxBatch),
  seed: int(0, Number.MAX_SAFE_INTEGER),
  judge: z.boolean(),
  reflection: z.boolean(),
  groupIds: z.array(z.string().min(1).max(P.maxGroupIdChars)).max(P.maxGroupsPerStep),
  /** Judge sub-switches (default true): pointwise items, pairwise items. Off → that style is never made. */
  pointwise: z.boolean().exactOptional(),
  pairwise: z.boolean().exactOptional(),
  /** Keep equal numbers of correct- and incorrect-target pointwise items (default false). */
  balanceLabels: z.boolean().exactOptional(),
  /** Template wording for recycled prompts (default: the service's config, "short"). */
  templateVariant: z.enum(['full', 'short']).exactOptional(),
  /** Longest wrong response shown in a CoT reflection, in chars (default: the service's config). */
  maxCotChars: int(1, 1_000_000).exactOptional(),
});
export type SynthesisTask = DeepReadonly<z.infer<typeof SynthesisTaskSchema>>;
export const parseSynthesisTask = (data: unknown): SynthesisTask =>
  parseWith(SynthesisTaskSchema, 'SynthesisTask', data);

/** What recycling did; stored under synthesisResultKey (idempotent). */
export const SynthesisResultSchema = z.object({
  judgeItems: count(),
  reflectionItems: count(),
  bufferLength: count(),
  /** The reward-phase batch released for this step (B items popped from the FIFO), or null. */
  released: z.array(PromptItemSchema).max(P.maxBatch).nullable(),
  /** Oldest buffer items dropped this step because the buffer was over its bound. */
  dropped: count().exactOptional(),
  /** True when this step started a new epoch and cleared the buffer first. */
  epochCleared: z.boolean().exactOptional(),
});
export type SynthesisResult = DeepReadonly<z.infer<typeof SynthesisResultSchema>>;
export const parseSynthesisResult = (data: unknown): SynthesisResult =>
  parseWith(SynthesisResultSchema, 'SynthesisResult', data);

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

const G = GENERATE_LIMITS;

/**
 * eval-generate queue payload (JobService.Generate): greedy outputs of the checkpoint at `checkpoint` (an
 * absolute path the rollout workers can read) for each prompt, rendered as rollouts render them.
 */
export const GenerateTaskSchema = z
  .object({
    checkpoint: z.string().min(1).max(G.maxPathChars),
    prompts: z.array(z.string().max(G.maxPromptChars)).min(1).max(G.maxPrompts),
    maxNewTokens: int(1, G.maxNewTokens),
    /** "" = the checkpoint's tokenizer.json, else char; "char"; or a tokenizer directory. */
    tokenizer: z.string().max(G.maxPathChars),
  })
  .refine((t) => t.prompts.reduce((n, p) => n + p.length, 0) <= G.maxTotalChars, {
    path: ['prompts'],
    message: `prompts hold more than ${G.maxTotalChars} characters together`,
  });
export type GenerateTask = DeepReadonly<z.infer<typeof GenerateTaskSchema>>;
export const parseGenerateTask = (data: unknown): GenerateTask =>
  parseWith(GenerateTaskSchema, 'GenerateTask', data);

/** What a rollout worker returns for a GenerateTask: the outputs, or why the request cannot be served. */
export const GenerateTaskResultSchema = z.union([
  z.object({
    outputs: z.array(z.string().max(P.maxTextChars)).max(G.maxPrompts),
    tooLong: count(),
    outputTokens: count(),
    /** "host:pid" of the worker. */
    worker: z.string().max(1_024),
    /** The model directory loaded. */
    checkpointDir: z.string().max(G.maxPathChars),
  }),
  z.object({
    /** A request error (not retried): the checkpoint is missing or unusable, or the request is bad. */
    error: z.object({
      code: z.enum(['not-found', 'invalid-argument']),
      message: z.string().max(P.maxMessageChars),
    }),
  }),
]);
export type GenerateTaskResult = DeepReadonly<z.infer<typeof GenerateTaskResultSchema>>;
export const parseGenerateTaskResult = (data: unknown): GenerateTaskResult =>
  parseWith(GenerateTaskResultSchema, 'GenerateTaskResult', data);

const decimal = (max: number) =>
  z
    .string()
    .regex(/^\d{1,16}$/, 'must be a decimal integer')
    .transform(Number)
    .pipe(int(0, max));

/**
 * The job's policy hash (jobKeys.policy; the learner writes it after every published version): the
 * newest version, where to fetch it (PolicyService address), its size and sha256. Redis hash fields are
 * strings; the schema reads them as numbers.
 */
export const PolicyHashSchema = z.object({
  version: decimal(P.maxPolicyVersion),
  learnerAddress: z.string().max(1_024),
  bytes: decimal(Number.MAX_SAFE_INTEGER),
  sha256: z.string().regex(/^[0-9a-f]{64}$/, 'must be a sha256 hex digest'),
});
export type PolicyHash = DeepReadonly<z.infer<typeof PolicyHashSchema>>;
/** The policy hash as HGETALL returns it; null when the hash does not exist (HGETALL gives {}). */
export function parsePolicyHash(fields: Record<string, string>): PolicyHash | null {
  if (Object.keys(fields).length === 0) return null;
  return parseWith(PolicyHashSchema, 'policy hash', fields);
}

/** The model config a policy stream's header carries (config_json): a JSON object (kernels parse it). */
export const PolicyConfigSchema = z.record(z.string(), z.unknown());
export const parsePolicyConfig = (data: unknown): Record<string, unknown> =>
  parseWith(PolicyConfigSchema, 'policy config_json', data);

/** Where a job's driver resumes: stored as JSON in the job hash field `cursor` (coordinator only). */
export const DriverCursorSchema = z.object({
  /** Warm-up steps done. */
  warmup: int(0, P.maxStep),
  /** Completed RL steps at the last evaluation, −1 before the first. */
  evaluated: int(-1, P.maxStep),
  /** Completed RL steps. */
  step: int(0, P.maxStep),
  /** The policy version after the last completed unit of work. */
  version: policyVersion(),
});
export type DriverCursor = z.infer<typeof DriverCursorSchema>;

/**
 * `<p>:job:<id>:resumed`: where the learner last loaded the job from — a checkpoint written after the
 * update (step, phase) at `version`, or `start` (the spec's model at version 0, step 0). The coordinator
 * compares it with the version it expects and rewinds the job to it when the learner is behind.
 */
export const LearnerResumeSchema = z.object({
  version: policyVersion(),
  step: int(0, P.maxStep),
  phase: z.enum(['start', 'warmup', 'policy', 'reward', 'checkpoint']),
  /** The checkpoint directory (empty for `start`). */
  dir: z.string().max(4096),
  /** ISO time of the load. */
  at: z.string().max(64),
});
export type LearnerResume = z.infer<typeof LearnerResumeSchema>;
export const parseLearnerResume = (data: unknown): LearnerResume =>
  parseWith(LearnerResumeSchema, 'LearnerResume', data);
export const parseDriverCursor = (data: unknown): DriverCursor =>
  parseWith(DriverCursorSchema, 'driver cursor', data);
