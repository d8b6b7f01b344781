// Batch building, pure data: a warm-up task's (prompt, target) pairs → SFT sequences; a policy/reward
// task's verified groups → GRPO sequences with their group advantages (groups sampled at another version
// are stale and dropped); and the optimizer pass's cut: a deterministic shuffle, minibatches (one AdamW
// step each) and, inside each, micro-batches (gradient accumulation).
import { InvalidArgumentError } from '@spark/runtime';
import type { LearnTask, VerifiedGroup } from '@spark/contract';
import { charTokenizer, renderPromptTokens } from '@spark/method/tokenizers';
import type { ScoredSequence } from '@spark/kernels';

import { chunks, groupAdvantages, mixSeed, shuffled } from './grpo.js';

/** A sequence before its log-probs: tokens, prompt length and (GRPO) its advantage. */
export interface AdvantagedSequence extends ScoredSequence {
  readonly advantage: number;
}

export interface SequenceBatch<S> {
  readonly sequences: S[];
  /** Sequences left out: too long for the model, empty, or with out-of-vocabulary tokens. */
  readonly skipped: number;
  /** Groups sampled with another policy version than the learner's. */
  readonly staleGroups: number;
}

/** Warm-up: each (prompt, target) pair as chat prompt + target + EOS; prompts as long as the context are skipped. */
export function sftSequences(
  examples: LearnTask['sft'],
  maxLen: number,
  taskId: string,
): SequenceBatch<ScoredSequence> {
  const sequences: ScoredSequence[] = [];
  let skipped = 0;
  for (const ex of examples) {
    if (typeof ex?.prompt !== 'string' || typeof ex.target !== 'string') {
      throw new InvalidArgumentError(`task ${taskId}: every sft example needs prompt and target text`);
    }
    const prompt = renderPromptTokens(charTokenizer, ex.prompt);
    const response = [...charTokenizer.encode(ex.target), charTokenizer.eosId];
    if (prompt.length >= maxLen) {
      skipped++;
      continue;
    }
    const tokens = [...prompt, ...response].slice(0, maxLen);
    sequences.push({ tokens: Uint32Array.from(tokens), promptLen: prompt.length });
  }
  return { sequences, skipped, staleGroups: 0 };
}

export interface GrpoSequenceOptions {
  /** The learner's policy version: groups sampled at any other are stale. */
  version: number;
  vocabSize: number;
  maxLen: number;
  /** Most sequences one task may carry (InvalidArgument beyond). */
  maxSequences: number;
  taskId: string;
}

/** GRPO: every response of every current group as prompt + response, with its group's advantage. */
export function grpoSequences(
  groups: readonly VerifiedGroup[],
  options: GrpoSequenceOptions,
): SequenceBatch<AdvantagedSequence> {
  const { version, vocabSize, maxLen, maxSequences, taskId } = options;
  const sequences: AdvantagedSequence[] = [];
  let staleGroups = 0;
  let skipped = 0;
  let total = 0;
  for (const group of groups) {
    if (group.policyVersion !== version) {
      staleGroups++;
      continue;
    }
    const adv = groupAdvantages(group.responses.map((r) => r.reward));
    const prompt = group.promptTokens;
    group.responses.forEach((r, i) => {
      if (++total > maxSequences) {
        throw new InvalidArgumentError(`task ${taskId} holds more than ${maxSequences} sequences`);
      }
      const tokens = [...prompt, ...r.tokens];
      const ok =
        prompt.length >= 1 &&
        r.tokens.length >= 1 &&
        tokens.length <= maxLen &&
        tokens.every((t) => Number.isInteger(t) && t >= 0 && t < vocabSize);
      if (!ok) {
        skipped++;
        return;
      }
      sequences.push({ tokens: Uint32Array.from(tokens), promptLen: prompt.length, advantage: adv[i] ?? 0 });
    });
  }
  return { sequences, skipped, staleGroups };
}

/**
 * Micro-batches of one minibatch: consecutive slices of at most `microBatchSize` sequences (gradient
 * accumulation). The slicing is part of the numerics: the step's loss is a token mean over the whole
 * minibatch, but the float sums follow the micro-batches, so another grouping (e.g. token-balanced)
 * gives another — equally valid, but different — training trajectory.
 */
export function microBatches<S>(minibatch: readonly S[], microBatchSize: number): S[][] {
  return chunks(minibatch, microBatchSize);
}

/** Tokens in a batch of sequences. */
export function tokenCount(batch: readonly { readonly tokens: ArrayLike<number> }[]): number {
  return batch.reduce((n, s) => n + s.tokens.length, 0);
}

/**
 * The optimizer pass's cut: the phase's sequences shuffled deterministically (job seed, step, phase),
 * cut into minibatches of `miniBatchSize` (one AdamW step each), each cut into micro-batches.
 */
export function optimizerBatches<S extends { readonly tokens: ArrayLike<number> }>(
  sequences: readonly S[],
  options: { seed: number; step: number; phase: string; miniBatchSize: number; microBatchSize: number },
): S[][][] {
  const order = shuffled(sequences, mixSeed(options.seed, options.step, options.phase, 'shuffle'));
  return chunks(order, options.miniBatchSize).map((mb) => microBatches(mb, options.microBatchSize));
}

/** Response tokens of a batch: what the loss is a token mean over (tokens after each prompt). */
export function responseTokenCount(
  batch: readonly { readonly tokens: ArrayLike<number>; readonly promptLen: number }[],
): number {
  return batch.reduce((n, s) => n + s.tokens.length - s.promptLen, 0);
}

/**
 * A minibatch's share of each rank of a learner group, balanced by token count (the forward and backward
 * cost): longest sequence first (ties: the earlier one), each to the rank with the fewest tokens so far
 * (ties: the lower rank). Deterministic in the minibatch alone, so every rank computes the same split;
 * inside a share the minibatch's order is kept. With fewer sequences than ranks some shares are empty
 * (those ranks contribute zero gradients).
 */
export function splitByTokens<S extends { readonly tokens: ArrayLike<number> }>(
  minibatch: readonly S[],
  ranks: number,
): S[][] {
  if (!Number.isInteger(ranks) || ranks < 1)
    throw new InvalidArgumentError(`ranks must be ≥ 1, got ${ranks}`);
  const order = minibatch.map((s, i) => ({ i, n: s.tokens.length })).sort((a, b) => b.n - a.n || a.i - b.i);
  const load = new Array<number>(ranks).fill(0);
  const owner = new Array<number>(minibatch.length).fill(0);
  for (const { i, n } of order) {
    let best = 0;
    for (let r = 1; r < ranks; r++) if ((load[r] as number) < (load[best] as number)) best = r;
    owner[i] = best;
    load[best] = (load[best] as number) + n;
  }
  const shares: S[][] = Array.from({ length: ranks }, () => []);
  minibatch.forEach((s, i) => (shares[owner[i] as number] as S[]).push(s));
  return shares;
}
