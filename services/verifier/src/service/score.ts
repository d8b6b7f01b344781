// Scoring of one VerifyTask (cluster-plan.md step 3): validate the payload (poison input → a named error
// the worker turns into UnrecoverableError), score every response with the verifier library — problems and
// reflections against the gold answer (math mode, last box), pointwise/pairwise judge prompts against the
// verdict label (judge mode, first box) — one call at a time so each gets the library's full time budget,
// and build the VerifiedGroups the learner and reward-synthesis read.
import { InvalidArgumentError } from '@spark/runtime';
import type { KindName, VerifiedGroup, VerifiedResponse, VerifyTask } from '@spark/contract';
import { z } from 'zod';

import type { Verifier } from '@spark/verify';

/** Bounds of one task: groups, responses per group, chars per response. */
export const MAX_GROUPS_PER_TASK = 4_096;
export const MAX_RESPONSES_PER_GROUP = 1_024;
export const MAX_TEXT_CHARS = 1 << 20;

const kind = z.enum(['problem', 'pointwise', 'pairwise', 'reflection']);
const promptSchema = z.object({
  promptId: z.string().min(1).max(1024),
  kind,
  text: z.string().max(MAX_TEXT_CHARS),
  label: z.string().max(MAX_TEXT_CHARS),
  sourceGroupId: z.string().max(1024).nullable(),
  question: z.string().max(MAX_TEXT_CHARS).nullable(),
  tags: z.array(z.string().max(256)).max(64),
});
const responseSchema = z.object({
  text: z.string().max(MAX_TEXT_CHARS),
  tokens: z.array(z.number().int().min(0)).max(1 << 20),
  logprobs: z.array(z.number()).max(1 << 20),
  finish: z.enum(['stop', 'length']),
});
const taskSchema = z.object({
  jobId: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/),
  step: z.number().int().min(0),
  phase: z.enum(['warmup', 'policy', 'reward', 'eval']),
  shardId: z.string().min(1).max(256),
  groups: z
    .array(
      z.object({
        groupId: z.string().min(1).max(2048),
        prompt: promptSchema,
        promptTokens: z.array(z.number().int().min(0)).max(1 << 20),
        policyVersion: z.number().int().min(0),
        responses: z.array(responseSchema).max(MAX_RESPONSES_PER_GROUP),
      }),
    )
    .max(MAX_GROUPS_PER_TASK),
});

/** Validates a VerifyTask payload; InvalidArgumentError lists every bad field (first 20). */
export function parseVerifyTask(data: unknown): VerifyTask {
  const r = taskSchema.safeParse(data);
  if (!r.success) {
    throw new InvalidArgumentError(
      'invalid VerifyTask',
      r.error.issues.slice(0, 20).map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`),
    );
  }
  return r.data;
}

/** Judge prompts are scored as verdicts (first box, exact label); everything else as an answer (last box). */
export function modeOf(k: KindName): 'math' | 'judge' {
  return k === 'pointwise' || k === 'pairwise' ? 'judge' : 'math';
}

/** Scores every response of the task, in order. */
export async function scoreTask(
  verifier: Verifier,
  task: VerifyTask,
  onResponse?: (kind: KindName, reward: 0 | 1, seconds: number) => void,
): Promise<VerifiedGroup[]> {
  const out: VerifiedGroup[] = [];
  for (const g of task.groups) {
    const mode = modeOf(g.prompt.kind);
    const responses: VerifiedResponse[] = [];
    for (const r of g.responses) {
      const t0 = performance.now();
      const v = await verifier.verify(r.text, g.prompt.label, { mode });
      onResponse?.(g.prompt.kind, v.reward, (performance.now() - t0) / 1000);
      responses.push({ ...r, reward: v.reward, extracted: v.extracted, reason: v.reason });
    }
    out.push({
      groupId: g.groupId,
      prompt: g.prompt,
      promptTokens: g.promptTokens,
      policyVersion: g.policyVersion,
      responses,
    });
  }
  return out;
}
