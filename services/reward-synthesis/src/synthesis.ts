// The reward-synthesis step of one job (docs/architecture.md, step 6 of a job step): read the policy phase's verified groups,
// recycle them into judge and reflection PromptItems (docs/method.md "Recycling", seeded by job seed + step), and
// in ONE Lua script per step: return the stored SynthesisResult if the step already ran (redelivery), else
// clear the FIFO buffer when the epoch changed, RPUSH the new items, drop the oldest beyond the bound,
// release (LPOP) B items when the buffer holds ≥ B, and store the SynthesisResult — so the buffer effect
// happens exactly once per step however often BullMQ delivers the task.
import { InvalidArgumentError, FailedPreconditionError } from '@spark/runtime';
import {
  jobKeys,
  parseJson,
  parseSynthesisResult,
  parseVerifiedGroup,
  type PromptItem,
  type SynthesisResult,
  type SynthesisTask,
  type VerifiedGroup,
} from '@spark/contract';
import {
  recycleStep,
  Rng,
  type JudgeItem,
  type RecycleGroup,
  type ReflectionItem,
} from '@spark/method/recycling';
import type { Redis } from '@spark/runtime/redis';

/** The SynthesisTask parser (the contract's schema), re-exported for the worker. */
export { parseSynthesisTask } from '@spark/contract';

export interface SynthesisOptions {
  /** Template wording when the task does not say (default "short"). */
  readonly templateVariant: 'full' | 'short';
  /** Longest CoT shown in a reflection when the task does not say. */
  readonly maxCotChars: number;
  /** Buffer bound; the oldest items beyond it are dropped (never below the batch size). */
  readonly maxBufferItems: number;
}

/** What one run did (for metrics); `fresh` is false when a stored result was returned. */
export interface SynthesisOutcome {
  readonly result: SynthesisResult;
  readonly fresh: boolean;
  readonly items: readonly PromptItem[];
}

/** Turns a recycled judge item into a PromptItem of kind pointwise or pairwise. */
export function judgePromptItem(step: number, group: VerifiedGroup, item: JudgeItem): PromptItem {
  return {
    promptId: `j-${step}-${group.prompt.promptId}`,
    kind: item.style === 'pairwise' ? 'pairwise' : 'pointwise',
    text: item.prompt,
    label: item.label,
    sourceGroupId: group.groupId,
    question: null,
    tags: [item.style, item.groupCase],
  };
}

/** Turns a recycled reflection item into a PromptItem of kind reflection (label = the gold answer). */
export function reflectionPromptItem(step: number, group: VerifiedGroup, item: ReflectionItem): PromptItem {
  return {
    promptId: `r-${step}-${group.prompt.promptId}`,
    kind: 'reflection',
    text: item.prompt,
    label: item.label,
    sourceGroupId: group.groupId,
    question: null,
    tags: [item.mode, item.tone],
  };
}

/**
 * Recycles verified policy-phase groups (pure, deterministic in task.seed and task.step). The judge cap is
 * B/2 per step; pointwise/pairwise switches: pairwise off → mixed groups give pointwise items; pointwise off
 * → mixed groups give pairwise items and the all-correct/all-wrong pointwise items are not used.
 */
export function recycleGroups(
  task: SynthesisTask,
  groups: readonly VerifiedGroup[],
  options: Pick<SynthesisOptions, 'templateVariant' | 'maxCotChars'>,
): PromptItem[] {
  const pointwise = task.pointwise ?? true;
  const pairwise = task.pairwise ?? true;
  const judge = task.judge && (pointwise || pairwise);
  const byId = new Map<string, VerifiedGroup>();
  const inputs: RecycleGroup[] = groups.map((g) => {
    byId.set(g.groupId, g);
    return {
      id: g.groupId,
      question: g.prompt.question ?? g.prompt.text,
      gold: g.prompt.label,
      // the extracted answer is the one the reward was computed on (the last box), so a judge label
      // derived from the reward is consistent with the judged answer
      responses: g.responses.map((r) => ({ text: r.text, answer: r.extracted, reward: r.reward })),
    };
  });
  const rng = new Rng(`synthesis/${task.seed}/${task.step}`);
  const recycled = recycleStep(inputs, rng, {
    variant: task.templateVariant ?? options.templateVariant,
    maxCotChars: task.maxCotChars ?? options.maxCotChars,
    judge,
    reflection: task.reflection,
    maxJudge: Math.floor(task.batchSize / 2),
    maxReflection: Math.floor(task.batchSize / 2),
    ...(task.balanceLabels ? { balanceLabels: true } : {}),
    ...(pairwise ? {} : { pPointwiseMixed: 1 }),
    ...(pointwise ? {} : { pPointwiseMixed: 0 }),
  });
  const items: PromptItem[] = [];
  for (const j of recycled.judge) {
    if (!pointwise && j.style !== 'pairwise') continue;
    const g = byId.get(j.sourceId ?? '');
    if (g) items.push(judgePromptItem(task.step, g, j));
  }
  for (const r of recycled.reflection) {
    const g = byId.get(r.sourceId ?? '');
    if (g) items.push(reflectionPromptItem(task.step, g, r));
  }
  return items;
}

// KEYS: synth, buffer, bufferEpoch. ARGV: epoch, B, maxLen, judgeCount, reflectionCount, item JSON…
// Returns {fresh (0|1), result JSON}.
const SYNTH_SCRIPT = `
local existing = redis.call('GET', KEYS[1])
if existing then return {0, existing} end
local cleared = 'false'
local cur = redis.call('GET', KEYS[3])
if cur ~= ARGV[1] then
  if cur then cleared = 'true' end
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[3], ARGV[1])
end
local n = #ARGV
local i = 6
while i <= n do
  local j = math.min(i + 999, n)
  redis.call('RPUSH', KEYS[2], unpack(ARGV, i, j))
  i = j + 1
end
local len = redis.call('LLEN', KEYS[2])
local maxLen = tonumber(ARGV[3])
local dropped = 0
if len > maxLen then
  dropped = len - maxLen
  redis.call('LTRIM', KEYS[2], dropped, -1)
  len = maxLen
end
local released = 'null'
local b = tonumber(ARGV[2])
if len >= b then
  local popped = redis.call('LPOP', KEYS[2], b)
  released = '[' .. table.concat(popped, ',') .. ']'
  len = len - b
end
local result = '{"judgeItems":' .. ARGV[4] .. ',"reflectionItems":' .. ARGV[5] .. ',"bufferLength":' .. len ..
  ',"released":' .. released .. ',"dropped":' .. dropped .. ',"epochCleared":' .. cleared .. '}'
redis.call('SET', KEYS[1], result)
return {1, result}
`;

/** Reads the task's verified groups (all of the phase hash, sorted by id, when groupIds is empty). */
export async function readVerifiedGroups(
  redis: Redis,
  prefix: string,
  task: SynthesisTask,
): Promise<VerifiedGroup[]> {
  const key = jobKeys.groups(prefix, task.jobId, task.step, 'policy');
  let entries: [string, string | null][];
  if (task.groupIds.length === 0) {
    const all = await redis.hgetall(key);
    entries = Object.entries(all).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  } else {
    const values = await redis.hmget(key, ...task.groupIds);
    entries = task.groupIds.map((id, i) => [id, values[i] ?? null]);
  }
  const missing = entries.filter(([, v]) => v === null).map(([id]) => id);
  if (missing.length) {
    throw new FailedPreconditionError(
      `${missing.length} verified group(s) of step ${task.step} are not stored yet (e.g. ${missing[0]})`,
    );
  }
  return entries.map(([id, v]) => {
    const g = parseVerifiedGroup(parseJson(v ?? '', `verified group ${id}`));
    if (g.groupId !== id) throw new InvalidArgumentError(`verified group ${id} holds group ${g.groupId}`);
    return g;
  });
}

/** Runs (or replays) one step's synthesis. */
export async function synthesize(
  redis: Redis,
  prefix: string,
  task: SynthesisTask,
  options: SynthesisOptions,
): Promise<SynthesisOutcome> {
  const synthKey = jobKeys.synth(prefix, task.jobId, task.step);
  const stored = await redis.get(synthKey);
  if (stored !== null) {
    return { result: parseSynthesisResult(parseJson(stored, synthKey)), fresh: false, items: [] };
  }
  const groups = await readVerifiedGroups(redis, prefix, task);
  const items = recycleGroups(task, groups, options);
  const judgeItems = items.filter((i) => i.kind !== 'reflection').length;
  const maxLen = Math.max(options.maxBufferItems, task.batchSize);
  const reply: unknown = await redis.eval(
    SYNTH_SCRIPT,
    3,
    synthKey,
    jobKeys.buffer(prefix, task.jobId),
    jobKeys.bufferEpoch(prefix, task.jobId),
    String(task.epoch),
    String(task.batchSize),
    String(maxLen),
    String(judgeItems),
    String(items.length - judgeItems),
    ...items.map((i) => JSON.stringify(i)),
  );
  if (!Array.isArray(reply) || reply.length !== 2 || typeof reply[1] !== 'string') {
    throw new Error(
      `synthesis script returned ${JSON.stringify(reply).slice(0, 200)}, expected [fresh, result]`,
    );
  }
  const fresh = Number(reply[0]) === 1;
  return { result: parseSynthesisResult(parseJson(reply[1], synthKey)), fresh, items: fresh ? items : [] };
}
