// Greedy generation with a checkpoint, for evaluation (in-process in `spark eval`, and in the rollout
// workers behind JobService.Generate for `spark eval --address`): loads a checkpoint directory (config.json + safetensors, as the
// learner and `Model.save` write them) with @spark/kernels and turns it into the batched greedy text →
// text `GenerateFn` of @spark/method/evaluation. Prompts are rendered exactly as the rollout workers
// render them (renderPromptTokens: one user turn + the assistant start); outputs are decoded without
// special tokens. A prompt longer than the model's context (maxPositionEmbeddings − 1 tokens) is not sent:
// its output is empty (so it scores as a missing answer) and it is counted in `stats.tooLong`.
// CHECKPOINT may also be a learner checkpoint root (`latest.json` naming `step-<n>/`): the newest one is used.
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';

import {
  CHECKPOINT_FILES,
  MAX_LATEST_POINTER_BYTES,
  MAX_TRAINER_STATE_BYTES,
  parseJson,
  parseLatestPointer,
  parseTrainerState,
  stepOfDirName,
  type LatestPointer,
  type TaskMix,
} from '@spark/contract';

import type { GenerateFn, ScoreFn } from '../evaluation/index.js';
import { loadTokenizer, renderPromptTokens, type Tokenizer } from '../tokenizers/index.js';
import { Model } from '@spark/kernels';

/** Greedy decoding settings of evaluation. */
export interface GenerateSettings {
  /** Longest output in tokens (default 96). */
  readonly maxNewTokens: number;
  /** Prompts per native sample call (default 32). */
  readonly batch: number;
}

export const DEFAULT_GENERATE: GenerateSettings = Object.freeze({ maxNewTokens: 96, batch: 32 });

/** Counters of one generator. */
export interface GenerateStats {
  calls: number;
  prompts: number;
  tooLong: number;
  outputTokens: number;
}

/** Per-call options of a generator: the settings, and sampling instead of greedy decoding. */
export interface GenerateCallOptions extends Partial<GenerateSettings> {
  /** Sampling temperature (default 0: greedy); in [0, 10]. */
  readonly temperature?: number;
  /** Sampling seed (default 0): the same seed, model and prompts give the same outputs. */
  readonly seed?: number;
}

/** A loaded model with its tokenizer and generator. */
export interface LoadedGenerator {
  readonly model: Model;
  readonly tokenizer: Tokenizer;
  /** The GenerateFn; `options` override the settings for one call (validated the same way). */
  readonly generate: GenerateFn &
    ((prompts: readonly string[], options?: GenerateCallOptions) => Promise<readonly string[]>);
  /**
   * Teacher-forced verdict scores (@spark/method/evaluation ScoreFn): for each request, the total
   * log-probability of every candidate after the rendered prompt and the prefix (the kernels' log-probs);
   * null when prompt, prefix and the longest candidate do not fit the model's context.
   */
  readonly score: ScoreFn;
  readonly stats: GenerateStats;
  close(): void;
}

/** Thrown for an unusable checkpoint or tokenizer; `notFound` when nothing is at the path. */
export class CheckpointLoadError extends Error {
  override readonly name = 'CheckpointLoadError';
  readonly notFound: boolean;
  constructor(message: string, options: { cause?: unknown; notFound?: boolean } = {}) {
    super(message, options.cause !== undefined ? { cause: options.cause } : undefined);
    this.notFound = options.notFound ?? false;
  }
}

/** The batched greedy generator of a model. */
export function generatorOf(model: Model, tokenizer: Tokenizer, settings: GenerateSettings): LoadedGenerator {
  const maxPos = model.config.maxPositionEmbeddings;
  const check = (s: GenerateSettings): GenerateSettings => {
    if (!Number.isInteger(s.maxNewTokens) || s.maxNewTokens < 1 || s.maxNewTokens > maxPos)
      throw new RangeError(`max new tokens must be an integer in [1, ${maxPos}], got ${s.maxNewTokens}`);
    if (!Number.isInteger(s.batch) || s.batch < 1 || s.batch > 4096)
      throw new RangeError(`batch must be an integer in [1, 4096], got ${s.batch}`);
    return s;
  };
  const defaults = check(settings);
  const stats: GenerateStats = { calls: 0, prompts: 0, tooLong: 0, outputTokens: 0 };
  const generate = async (
    prompts: readonly string[],
    options: GenerateCallOptions = {},
  ): Promise<readonly string[]> => {
    const call =
      options.maxNewTokens || options.batch
        ? check({
            maxNewTokens: options.maxNewTokens ?? defaults.maxNewTokens,
            batch: options.batch ?? defaults.batch,
          })
        : defaults;
    const temperature = options.temperature ?? 0;
    if (!Number.isFinite(temperature) || temperature < 0 || temperature > 10)
      throw new RangeError(`temperature must be in [0, 10], got ${temperature}`);
    const seed = options.seed ?? 0;
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff)
      throw new RangeError(`seed must be an integer in [0, 2^32), got ${seed}`);
    const outputs: string[] = Array.from({ length: prompts.length }, () => '');
    const runnable: { index: number; tokens: Uint32Array }[] = [];
    prompts.forEach((p, index) => {
      const tokens = renderPromptTokens(tokenizer, p);
      if (tokens.length > maxPos - 1) stats.tooLong++;
      else runnable.push({ index, tokens: Uint32Array.from(tokens) });
    });
    stats.prompts += prompts.length;
    for (let start = 0; start < runnable.length; start += call.batch) {
      const chunk = runnable.slice(start, start + call.batch);
      stats.calls++;
      const samples = await model.sample({
        prompts: chunk.map((c) => c.tokens),
        temperature,
        topP: 1,
        maxNewTokens: call.maxNewTokens,
        stopTokens: tokenizer.stopIds,
        seed,
      });
      samples.forEach((s, i) => {
        stats.outputTokens += s.tokens.length;
        outputs[(chunk[i] as { index: number }).index] = tokenizer.decode([...s.tokens], {
          skipSpecial: true,
        });
      });
    }
    return outputs;
  };
  const score: ScoreFn = async (requests) => {
    const out: (number[] | null)[] = requests.map(() => null);
    const seqs: { request: number; candidate: number; tokens: Uint32Array; promptLen: number }[] = [];
    requests.forEach((r, request) => {
      const base = [...renderPromptTokens(tokenizer, r.prompt), ...tokenizer.encode(r.prefix)];
      const candidates = r.candidates.map((c) => tokenizer.encode(c));
      const longest = Math.max(0, ...candidates.map((c) => c.length));
      if (candidates.length === 0 || candidates.some((c) => c.length === 0) || base.length + longest > maxPos)
        return;
      out[request] = candidates.map(() => 0);
      candidates.forEach((c, candidate) =>
        seqs.push({ request, candidate, tokens: Uint32Array.from([...base, ...c]), promptLen: base.length }),
      );
    });
    for (let start = 0; start < seqs.length; start += defaults.batch) {
      const chunk = seqs.slice(start, start + defaults.batch);
      const lps = await model.logprobs(chunk);
      chunk.forEach((s, i) => {
        const total = (lps[i] as Float32Array).reduce((a, b) => a + b, 0);
        (out[s.request] as number[])[s.candidate] = total;
      });
    }
    return out;
  };
  return { model, tokenizer, generate, score, stats, close: () => model.free() };
}

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );

/**
 * The model directory of CHECKPOINT: itself when it holds config.json, else the step directory named by
 * its latest.json (a learner checkpoint root; @spark/contract's checkpoint layout). CheckpointLoadError
 * when neither is there.
 */
export async function resolveCheckpoint(checkpoint: string): Promise<string> {
  if (await exists(join(checkpoint, CHECKPOINT_FILES.config))) return checkpoint;
  const latest = join(checkpoint, CHECKPOINT_FILES.latest);
  if (!(await exists(latest)))
    throw new CheckpointLoadError(
      `cannot load checkpoint ${checkpoint}: no ${CHECKPOINT_FILES.config} and no ${CHECKPOINT_FILES.latest} there`,
      { notFound: true },
    );
  let pointer: LatestPointer;
  try {
    const text = (await readFile(latest, 'utf8')).slice(0, MAX_LATEST_POINTER_BYTES);
    pointer = parseLatestPointer(parseJson(text, CHECKPOINT_FILES.latest));
  } catch (e) {
    throw new CheckpointLoadError(
      `cannot load checkpoint ${checkpoint}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
  if (stepOfDirName(pointer.dir) === null)
    throw new CheckpointLoadError(
      `cannot load checkpoint ${checkpoint}: ${CHECKPOINT_FILES.latest} does not name a step-<n> directory`,
    );
  return join(checkpoint, pointer.dir);
}

/**
 * The task mix CHECKPOINT was trained on (its trainer_state.json, @spark/contract TaskMix), or null when it
 * has none: no trainer_state.json (a `Model.save` checkpoint) or one written before the mix was recorded.
 * CheckpointLoadError for a trainer_state.json that is there but unreadable or invalid.
 */
export async function readTaskMix(checkpoint: string): Promise<TaskMix | null> {
  const path = join(await resolveCheckpoint(checkpoint), CHECKPOINT_FILES.trainerState);
  if (!(await exists(path))) return null;
  try {
    const text = await readFile(path, 'utf8');
    if (text.length > MAX_TRAINER_STATE_BYTES) throw new Error(`over ${MAX_TRAINER_STATE_BYTES} bytes`);
    return parseTrainerState(parseJson(text, path)).taskMix ?? null;
  } catch (e) {
    throw new CheckpointLoadError(`cannot read ${path}: ${e instanceof Error ? e.message : String(e)}`, {
      cause: e,
    });
  }
}

/**
 * Loads CHECKPOINT (a directory) and its tokenizer: `tokenizerSpec` when given, else the checkpoint's own
 * tokenizer.json when it has one, else the built-in char tokenizer.
 */
export async function loadGenerator(
  checkpoint: string,
  settings: GenerateSettings,
  tokenizerSpec?: string,
): Promise<LoadedGenerator> {
  const dir = await resolveCheckpoint(checkpoint);
  const spec = tokenizerSpec || ((await exists(join(dir, CHECKPOINT_FILES.tokenizer))) ? dir : 'char');
  let tokenizer: Tokenizer;
  try {
    tokenizer = await loadTokenizer(spec);
  } catch (e) {
    throw new CheckpointLoadError(
      `cannot load tokenizer ${spec}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
  let model: Model;
  try {
    model = await Model.load(dir);
  } catch (e) {
    throw new CheckpointLoadError(
      `cannot load checkpoint ${checkpoint}: ${e instanceof Error ? e.message : String(e)}`,
      { cause: e },
    );
  }
  if (tokenizer.vocabSize > model.config.vocabSize) {
    model.free();
    throw new CheckpointLoadError(
      `tokenizer ${spec} has ${tokenizer.vocabSize} ids but the model's vocabulary is ${model.config.vocabSize}`,
    );
  }
  try {
    return generatorOf(model, tokenizer, settings);
  } catch (e) {
    model.free();
    throw e;
  }
}
export { makeTinyCheckpoint } from './tiny-fixture.js';
