// Scoring of one VerifyTask (docs/architecture.md, step 2 of a job step): the payload is parsed by the contract's
// parseVerifyTask (poison input → InvalidArgumentError, which the worker turns into UnrecoverableError);
// every response is scored with the verifier library — problems and reflections against the gold answer
// (math mode, last box), pointwise/pairwise judge prompts against the verdict label (judge mode, first
// box) — one call at a time so each gets the library's full time budget, and the VerifiedGroups the
// learner and reward-synthesis read are built.
import type { KindName, VerifiedGroup, VerifiedResponse, VerifyTask } from '@spark/contract';

import type { Verifier } from '@spark/verify';

/** The VerifyTask parser (the contract's schema), re-exported for the worker. */
export { parseVerifyTask } from '@spark/contract';

/** Judge prompts are scored as verdicts (first box, exact label); everything else as an answer (last box). */
export function modeOf(k: KindName): 'math' | 'judge' {
  return k === 'pointwise' || k === 'pairwise' ? 'judge' : 'math';
}

/** Longest stretch of in-thread scoring before the event loop gets a turn (ms). */
const YIELD_MS = 10;

/** Job-level scoring settings (from the job spec). */
export interface ScoreOptions {
  /** Reward answers stated without a box in math mode (the spec's `verifyUnboxed`; default false). */
  readonly unboxed?: boolean;
}

/** Scores every response of the task, in order. */
export async function scoreTask(
  verifier: Verifier,
  task: VerifyTask,
  onResponse?: (kind: KindName, reward: 0 | 1, seconds: number) => void,
  options: ScoreOptions = {},
): Promise<VerifiedGroup[]> {
  const out: VerifiedGroup[] = [];
  // Answers decided in this thread resolve without ever yielding to the event loop: a large shard would
  // hold it for its whole scoring (lock renewals, health checks, metrics and shutdown all wait). Yield
  // whenever YIELD_MS of scoring has passed since the last turn.
  let turn = performance.now();
  for (const g of task.groups) {
    const mode = modeOf(g.prompt.kind);
    const responses: VerifiedResponse[] = [];
    for (const r of g.responses) {
      const t0 = performance.now();
      const v = await verifier.verify(
        r.text,
        g.prompt.label,
        mode === 'math' && options.unboxed ? { mode, unboxed: true } : { mode },
      );
      onResponse?.(g.prompt.kind, v.reward, (performance.now() - t0) / 1000);
      responses.push({ ...r, reward: v.reward, extracted: v.extracted, reason: v.reason });
      if (performance.now() - turn > YIELD_MS) {
        await new Promise<void>((resolve) => setImmediate(resolve));
        turn = performance.now();
      }
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
