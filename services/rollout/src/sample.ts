// Sampling of one rollout shard (the task is parsed by the contract's parseRolloutTask): render every
// prompt with the shared chat rendering (renderPromptTokens, the same prefix the learner trains on),
// sample the G responses of every prompt in ONE native call, decode, and build the VerifyTask's groups.
//
// Determinism per group: the native sampler takes one seed per call and gives sequence i its own PRNG
// stream (seed, i), independent of its batch-mates. The call's seed is groupSeed(sampling.seed, shardId)
// and group k's responses are sequences k·G … k·G+G−1. A shard's prompts and order are fixed by the
// coordinator (shardId = "<step>/<phase>/<index>"), so a redelivered shard re-samples exactly the same
// tokens for every group at the same policy version.
import { InvalidArgumentError } from '@spark/runtime';
import {
  groupIdOf,
  groupSeed,
  type RolloutTask,
  type SampledGroup,
  type SampledResponse,
} from '@spark/contract';
import { renderPromptTokens, type Tokenizer } from '@spark/method/tokenizers';
import type { Model } from '@spark/kernels';

/** The RolloutTask parser (the contract's schema), re-exported for the worker. */
export { parseRolloutTask } from '@spark/contract';

/** What sampling a shard produced, with counts for metrics. */
export interface ShardSamples {
  readonly groups: SampledGroup[];
  readonly tokensGenerated: number;
  readonly seconds: number;
}

const round6 = (x: number) => Math.round(x * 1e6) / 1e6;

/** Samples every group of the shard with `model` (already at the task's version) in one native call. */
export async function sampleShard(
  model: Model,
  tokenizer: Tokenizer,
  task: RolloutTask,
  limits: { maxNewTokens: number },
): Promise<ShardSamples> {
  const maxPos = model.config.maxPositionEmbeddings;
  if (model.config.vocabSize < tokenizer.vocabSize) {
    throw new InvalidArgumentError(
      `model vocabulary (${model.config.vocabSize}) is smaller than the tokenizer's (${tokenizer.vocabSize})`,
    );
  }
  const rendered = task.prompts.map((p) => {
    const tokens = renderPromptTokens(tokenizer, p.text);
    if (tokens.length >= maxPos) {
      throw new InvalidArgumentError(
        `prompt ${p.promptId} renders to ${tokens.length} tokens; the model's context is ${maxPos}`,
      );
    }
    return Uint32Array.from(tokens);
  });
  const G = task.groupSize;
  const prompts: Uint32Array[] = [];
  for (const t of rendered) for (let i = 0; i < G; i++) prompts.push(t);
  const t0 = performance.now();
  const outs = await model.sample({
    prompts,
    temperature: task.sampling.temperature,
    topP: task.sampling.topP,
    maxNewTokens: Math.min(task.sampling.maxNewTokens, limits.maxNewTokens),
    stopTokens: tokenizer.stopIds,
    seed: groupSeed(task.sampling.seed, task.shardId),
  });
  const seconds = (performance.now() - t0) / 1000;
  const stops = new Set(tokenizer.stopIds);
  let tokensGenerated = 0;
  const groups = task.prompts.map((p, k): SampledGroup => {
    const responses: SampledResponse[] = [];
    for (let i = 0; i < G; i++) {
      const o = outs[k * G + i];
      if (!o) throw new Error(`sampler returned ${outs.length} sequences, expected ${prompts.length}`);
      const tokens = Array.from(o.tokens);
      tokensGenerated += tokens.length;
      const body =
        tokens.length && stops.has(tokens[tokens.length - 1] as number) ? tokens.slice(0, -1) : tokens;
      responses.push({
        text: tokenizer.decode(body, { skipSpecial: true }),
        tokens,
        logprobs: Array.from(o.logprobs, round6),
        finish: o.finish,
      });
    }
    return {
      groupId: groupIdOf(task.step, task.phase, p.promptId),
      prompt: p,
      promptTokens: Array.from(rendered[k] as Uint32Array),
      policyVersion: task.policyVersion,
      responses,
    };
  });
  return { groups, tokensGenerated, seconds };
}
