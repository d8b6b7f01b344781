// The Model class: one native model (a branded handle) with a typed, validated, Promise-based API.
//
// Ordering and concurrency: calls on one Model run one at a time in call order (a per-model FIFO queue), so a
// caller may fire `trainStep` and then `getParams` without awaiting and still read the updated weights. The
// binding itself rejects overlapping operations with ModelBusyError; the queue means users of this class never
// see it. Different models run concurrently (each heavy call occupies one libuv worker; the backend's own
// threads do the math).
//
// Validation: every input is checked here before it crosses into native code (token ids < vocab, finite
// floats, integer counts, lengths); the binding checks again, so the raw surface is safe too.
//
// Copy semantics: typed arrays passed in are copied at call time (reuse them freely once the call returns);
// typed arrays returned are fresh, owned by the caller (backed by native memory the garbage collector frees).
import { mkdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fromNativeConfig, parseHfConfig, presetConfig, toHfConfig, toNativeConfig } from './config.js';
import type { ModelConfig, PresetName } from './config.js';
import {
  CheckpointFormatError,
  ConfigError,
  InvalidInputError,
  KernelIoError,
  ModelClosedError,
  toKernelError,
} from './errors.js';
import type { Collective } from './collective.js';
import { loadNative } from './native.js';
import type { NativeModelHandle, NativeSequence } from './native.js';

/** Process-unique model id (for logs and metrics labels of a handful of models). */
export type ModelId = number & { readonly __brand: 'SparkModelId' };

/** A sequence to score: tokens = prompt ++ response; log-probs are returned for tokens[promptLen..]. */
export interface ScoredSequence {
  readonly tokens: Uint32Array;
  /** ≥ 1: the first token has no prediction. */
  readonly promptLen: number;
}

/** A GRPO training sequence: per-sequence advantage and per-response-token old / reference log-probs. */
export interface GrpoSequence extends ScoredSequence {
  readonly advantage: number;
  readonly oldLogprobs: Float32Array;
  /** null only when klCoef = 0 */
  readonly refLogprobs: Float32Array | null;
}

export type Loss =
  { readonly kind: 'sft' } | { readonly kind: 'grpo'; readonly clipEps: number; readonly klCoef: number };

/** AdamW hyper-parameters of one step (lr is set per step by the caller; maxGradNorm 0 disables clipping). */
export interface AdamWParams {
  readonly lr: number;
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
  readonly maxGradNorm: number;
}

export const DEFAULT_ADAMW: AdamWParams = Object.freeze({
  lr: 1e-3,
  beta1: 0.9,
  beta2: 0.95,
  eps: 1e-8,
  weightDecay: 0,
  maxGradNorm: 1,
});

export interface SampleRequest {
  readonly prompts: readonly Uint32Array[];
  /** 0 = greedy */
  readonly temperature: number;
  /** nucleus mass in (0, 1]; 1 = off */
  readonly topP: number;
  /** 1..maxPositionEmbeddings; generation also stops at maxPositionEmbeddings total tokens */
  readonly maxNewTokens: number;
  readonly stopTokens: Uint32Array | readonly number[];
  /** same seed + same model + same request → same tokens */
  readonly seed: number;
}

export interface Sample {
  readonly tokens: Uint32Array;
  /** log-prob of each sampled token under the (untempered) model */
  readonly logprobs: Float32Array;
  readonly finish: 'stop' | 'length';
}

export interface TrainStats {
  readonly loss: number;
  readonly kl: number;
  readonly clipFraction: number;
  /** global gradient norm before clipping */
  readonly gradNorm: number;
  readonly tokens: number;
}

/** Unnormalised sums of one accumulateGrads call (divide by tokens for means). */
export interface LossSums {
  readonly lossSum: number;
  readonly klSum: number;
  readonly clipped: number;
  readonly tokens: number;
}

export interface ParamInfo {
  /** Hugging Face tensor name, e.g. model.layers.0.self_attn.q_proj.weight */
  readonly name: string;
  readonly shape: readonly number[];
  /** element offset in the flat buffer */
  readonly offset: number;
  readonly length: number;
}

export interface OptimizerState {
  readonly m: Float32Array;
  readonly v: Float32Array;
  readonly step: number;
}

/** A slice of the optimizer state: the moments of parameters [offset, offset + m.length). */
export interface OptimizerShard extends OptimizerState {
  readonly offset: number;
}

/** Limits checked before crossing the boundary. */
export const LIMITS = Object.freeze({
  maxSequences: 1 << 16,
  maxMicroBatches: 1 << 12,
});

const WEIGHTS_FILE = 'model.safetensors';
const INDEX_FILE = 'model.safetensors.index.json';
const OPTIMIZER_FILE = 'optimizer.safetensors';
const MAX_INDEX_JSON_BYTES = 64 << 20;

// ---- validation helpers (throw InvalidInputError naming the bad field) ----

/** Array test without type narrowing (readonly tuple types would otherwise widen to any[]). */
function isList(x: unknown): boolean {
  return Array.isArray(x);
}

function isInt(x: unknown, min: number, max: number): x is number {
  return typeof x === 'number' && Number.isInteger(x) && x >= min && x <= max;
}

function checkInt(x: unknown, what: string, min: number, max: number): number {
  if (!isInt(x, min, max))
    throw new InvalidInputError(`${what} must be an integer in [${min}, ${max}], got ${String(x)}`);
  return x;
}

function checkFinite(x: unknown, what: string): number {
  if (typeof x !== 'number' || !Number.isFinite(x))
    throw new InvalidInputError(`${what} must be a finite number, got ${String(x)}`);
  return x;
}

function checkF32(x: unknown, what: string, length: number | null = null): Float32Array {
  if (!(x instanceof Float32Array)) throw new InvalidInputError(`${what} must be a Float32Array`);
  if (length !== null && x.length !== length) {
    throw new InvalidInputError(`${what} has ${x.length} values, expected ${length}`);
  }
  for (let i = 0; i < x.length; i++) {
    if (!Number.isFinite(x[i])) throw new InvalidInputError(`${what}[${i}] is not finite (${String(x[i])})`);
  }
  return x;
}

function checkTokens(x: unknown, what: string, vocab: number, maxLen: number, minLen = 1): Uint32Array {
  if (!(x instanceof Uint32Array)) throw new InvalidInputError(`${what} must be a Uint32Array`);
  if (x.length < minLen || x.length > maxLen) {
    throw new InvalidInputError(`${what} has ${x.length} tokens, must be in [${minLen}, ${maxLen}]`);
  }
  for (let i = 0; i < x.length; i++) {
    const t = x[i] as number;
    if (t >= vocab)
      throw new InvalidInputError(`${what}[${i}] = ${t} is not a token id (vocab size ${vocab})`);
  }
  return x;
}

function checkLoss(loss: Loss): void {
  if (loss.kind === 'sft') return;
  if (loss.kind !== 'grpo') throw new InvalidInputError(`loss.kind must be 'sft' or 'grpo'`);
  const e = checkFinite(loss.clipEps, 'loss.clipEps');
  if (e <= 0 || e >= 1) throw new InvalidInputError(`loss.clipEps must be in (0, 1), got ${e}`);
  if (checkFinite(loss.klCoef, 'loss.klCoef') < 0) throw new InvalidInputError('loss.klCoef must be ≥ 0');
}

function checkAdamW(o: AdamWParams): void {
  if (checkFinite(o.lr, 'optimizer.lr') < 0) throw new InvalidInputError('optimizer.lr must be ≥ 0');
  for (const k of ['beta1', 'beta2'] as const) {
    const b = checkFinite(o[k], `optimizer.${k}`);
    if (b < 0 || b >= 1) throw new InvalidInputError(`optimizer.${k} must be in [0, 1), got ${b}`);
  }
  if (checkFinite(o.eps, 'optimizer.eps') <= 0) throw new InvalidInputError('optimizer.eps must be > 0');
  if (checkFinite(o.weightDecay, 'optimizer.weightDecay') < 0)
    throw new InvalidInputError('optimizer.weightDecay must be ≥ 0');
  if (checkFinite(o.maxGradNorm, 'optimizer.maxGradNorm') < 0)
    throw new InvalidInputError('optimizer.maxGradNorm must be ≥ 0');
}

async function readBounded(path: string, limit: number, what: string): Promise<string> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (err) {
    throw new KernelIoError(`${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (size > limit) throw new ConfigError(`${what} ${path} is ${size} bytes (limit ${limit})`);
  return readFile(path, 'utf8');
}

/** The weight files of a checkpoint directory: the shards of model.safetensors.index.json, or model.safetensors. */
export async function checkpointFiles(dir: string): Promise<string[]> {
  const indexPath = join(dir, INDEX_FILE);
  const hasIndex = await stat(indexPath).then(
    () => true,
    () => false,
  );
  if (!hasIndex) return [join(dir, WEIGHTS_FILE)];
  const text = await readBounded(indexPath, MAX_INDEX_JSON_BYTES, 'checkpoint index');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CheckpointFormatError(`${indexPath}: not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const map = (parsed as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null)
    throw new CheckpointFormatError(`${indexPath}: weight_map missing`);
  const files = new Set<string>();
  for (const f of Object.values(map)) {
    if (typeof f !== 'string' || f.includes('/') || f.includes('\\') || f.startsWith('.')) {
      throw new CheckpointFormatError(`${indexPath}: bad shard file name ${JSON.stringify(f)}`);
    }
    files.add(f);
  }
  if (files.size === 0) throw new CheckpointFormatError(`${indexPath}: weight_map is empty`);
  return [...files].sort().map((f) => join(dir, f));
}

/** Reads `<dir>/config.json` into a ModelConfig (ConfigError / KernelIoError on problems). */
export async function readCheckpointConfig(dir: string): Promise<ModelConfig> {
  const path = join(dir, 'config.json');
  return parseHfConfig(await readBounded(path, 1 << 20, 'config'), path);
}

export class Model {
  readonly id: ModelId;
  readonly config: ModelConfig;
  readonly numParams: number;
  /** A frozen reference copy: forward/logprobs/sample/params only; training calls throw FrozenModelError. */
  readonly frozen: boolean;
  /** The layout of the flat parameter (and gradient) buffer, in Hugging Face names. */
  readonly paramTable: readonly ParamInfo[];
  readonly #handle: NativeModelHandle;
  #closed = false;
  #tail: Promise<unknown> = Promise.resolve();

  private constructor(handle: NativeModelHandle) {
    const info = loadNative().modelInfo(handle);
    this.#handle = handle;
    this.id = info.id as ModelId;
    this.config = fromNativeConfig(info.config);
    this.numParams = info.numParams;
    this.frozen = info.frozen;
    this.paramTable = Object.freeze(
      info.params.map((p) => Object.freeze({ ...p, shape: Object.freeze([...p.shape]) })),
    );
  }

  /** A new model initialised deterministically from `seed` (same config + seed → same weights). */
  static async create(config: ModelConfig | PresetName, seed: number): Promise<Model> {
    const cfg = typeof config === 'string' ? presetConfig(config) : config;
    checkInt(seed, 'seed', 0, Number.MAX_SAFE_INTEGER);
    const native = loadNative();
    try {
      native.validateConfig(toNativeConfig(cfg));
    } catch (err) {
      throw new ConfigError(toKernelError(err).message, { cause: err });
    }
    try {
      return new Model(await native.createModel(toNativeConfig(cfg), seed));
    } catch (err) {
      throw toKernelError(err);
    }
  }

  /**
   * Loads a Hugging Face style checkpoint directory: config.json (Qwen2ForCausalLM / LlamaForCausalLM) and
   * model.safetensors or the shards named by model.safetensors.index.json (F32, BF16 or F16 tensors). With
   * `optimizer: true`, also optimizer.safetensors (as written by `save`).
   */
  static async load(
    dir: string,
    options: { readonly optimizer: boolean } = { optimizer: false },
  ): Promise<Model> {
    const cfg = await readCheckpointConfig(dir);
    const files = await checkpointFiles(dir);
    let model: Model;
    try {
      // Built straight from the files (memory-mapped, no random initialisation first).
      model = new Model(await loadNative().loadModel(toNativeConfig(cfg), files));
    } catch (err) {
      throw toKernelError(err);
    }
    if (options.optimizer) {
      try {
        await model.loadOptimizer(join(dir, OPTIMIZER_FILE));
      } catch (err) {
        model.free();
        throw err;
      }
    }
    return model;
  }

  /** True after `free()`. */
  get closed(): boolean {
    return this.#closed;
  }

  /** Releases the native memory now (or when the running operation ends). Later calls throw ModelClosedError. */
  free(): void {
    if (this.#closed) return;
    this.#closed = true;
    loadNative().freeModel(this.#handle);
  }

  /** Runs `op` after every earlier call on this model has settled; native errors are re-typed. */
  #enqueue<T>(name: string, op: (h: NativeModelHandle) => Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new ModelClosedError(`model #${this.id} was freed (${name})`));
    const run = this.#tail.then(
      () => op(this.#handle),
      () => op(this.#handle),
    );
    this.#tail = run.catch(() => undefined);
    return run.catch((err: unknown) => {
      throw toKernelError(err);
    });
  }

  #seq(s: ScoredSequence, what: string): NativeSequence {
    const tokens = checkTokens(
      s.tokens,
      `${what}.tokens`,
      this.config.vocabSize,
      this.config.maxPositionEmbeddings,
    );
    checkInt(s.promptLen, `${what}.promptLen`, 1, tokens.length);
    return { tokens, promptLen: s.promptLen, advantage: null, oldLogprobs: null, refLogprobs: null };
  }

  #grpoSeq(s: GrpoSequence, what: string, klCoef: number): NativeSequence {
    const base = this.#seq(s, what);
    const r = base.tokens.length - base.promptLen;
    const advantage = checkFinite(s.advantage, `${what}.advantage`);
    const oldLogprobs = checkF32(s.oldLogprobs, `${what}.oldLogprobs`, r);
    let refLogprobs: Float32Array | null = null;
    if (s.refLogprobs !== null) refLogprobs = checkF32(s.refLogprobs, `${what}.refLogprobs`, r);
    else if (klCoef !== 0) throw new InvalidInputError(`${what}.refLogprobs is required when klCoef > 0`);
    return { ...base, advantage, oldLogprobs, refLogprobs };
  }

  #batch(
    seqs: readonly (ScoredSequence | GrpoSequence)[],
    loss: Loss | null,
    what: string,
  ): NativeSequence[] {
    if (!isList(seqs) || seqs.length === 0 || seqs.length > LIMITS.maxSequences) {
      throw new InvalidInputError(`${what} must be an array of 1..${LIMITS.maxSequences} sequences`);
    }
    return seqs.map((s, i) =>
      loss?.kind === 'grpo'
        ? this.#grpoSeq(s as GrpoSequence, `${what}[${i}]`, loss.klCoef)
        : this.#seq(s, `${what}[${i}]`),
    );
  }

  /** Logits (batch, seq, vocab) for a (batch, seq) block of token ids. */
  forward(tokens: Uint32Array, batch: number, seq: number): Promise<Float32Array> {
    try {
      checkInt(batch, 'batch', 1, LIMITS.maxSequences);
      checkInt(seq, 'seq', 1, this.config.maxPositionEmbeddings);
      checkTokens(tokens, 'tokens', this.config.vocabSize, batch * seq, batch * seq);
    } catch (err) {
      return Promise.reject(toKernelError(err));
    }
    return this.#enqueue('forward', (h) => loadNative().forward(h, tokens, batch, seq));
  }

  /** Log-prob of every response token (tokens[promptLen..]) of every sequence. */
  logprobs(sequences: readonly ScoredSequence[]): Promise<Float32Array[]> {
    let batch: NativeSequence[];
    try {
      batch = this.#batch(sequences, null, 'sequences');
    } catch (err) {
      return Promise.reject(toKernelError(err));
    }
    return this.#enqueue('logprobs', (h) => loadNative().logprobs(h, batch));
  }

  /** Samples continuations of a batch of prompts with the KV cache. */
  sample(request: SampleRequest): Promise<Sample[]> {
    let prompts: Uint32Array[];
    let stop: Uint32Array;
    try {
      const r = request;
      if (!isList(r.prompts) || r.prompts.length === 0 || r.prompts.length > LIMITS.maxSequences) {
        throw new InvalidInputError(`prompts must be an array of 1..${LIMITS.maxSequences} token arrays`);
      }
      const maxPos = this.config.maxPositionEmbeddings;
      checkInt(r.maxNewTokens, 'maxNewTokens', 1, maxPos);
      // A sequence stops at maxPositionEmbeddings (finish 'length'), so a prompt needs room for one token.
      prompts = r.prompts.map((p, i) => checkTokens(p, `prompts[${i}]`, this.config.vocabSize, maxPos - 1));
      const t = checkFinite(r.temperature, 'temperature');
      if (t < 0) throw new InvalidInputError(`temperature must be ≥ 0, got ${t}`);
      const p = checkFinite(r.topP, 'topP');
      if (p <= 0 || p > 1) throw new InvalidInputError(`topP must be in (0, 1], got ${p}`);
      checkInt(r.seed, 'seed', 0, Number.MAX_SAFE_INTEGER);
      stop = r.stopTokens instanceof Uint32Array ? r.stopTokens : Uint32Array.from(r.stopTokens);
      checkTokens(stop, 'stopTokens', this.config.vocabSize, 1 << 16, 0);
    } catch (err) {
      return Promise.reject(toKernelError(err));
    }
    const req = {
      prompts,
      temperature: request.temperature,
      topP: request.topP,
      maxNewTokens: request.maxNewTokens,
      stopTokens: stop,
      seed: request.seed,
    };
    return this.#enqueue('sample', (h) => loadNative().sample(h, req));
  }

  /**
   * One optimiser step: zero grads, forward + backward of every micro-batch (token-level mean over all
   * response tokens of the step), global grad-norm clipping, AdamW.
   */
  trainStep(
    microBatches: readonly (readonly ScoredSequence[])[] | readonly (readonly GrpoSequence[])[],
    loss: Loss,
    optimizer: AdamWParams,
  ): Promise<TrainStats> {
    let mbs: NativeSequence[][];
    try {
      checkLoss(loss);
      checkAdamW(optimizer);
      if (
        !isList(microBatches) ||
        microBatches.length === 0 ||
        microBatches.length > LIMITS.maxMicroBatches
      ) {
        throw new InvalidInputError(`microBatches must be an array of 1..${LIMITS.maxMicroBatches} batches`);
      }
      mbs = microBatches.map((mb, i) => this.#batch(mb, loss, `microBatches[${i}]`));
    } catch (err) {
      return Promise.reject(toKernelError(err));
    }
    const opt = { ...optimizer };
    return this.#enqueue('trainStep', (h) => loadNative().trainStep(h, mbs, loss, opt));
  }

  /** Sets every gradient to 0 (the start of a manual accumulate → all-reduce → applyOptimizer step). */
  zeroGrads(): Promise<void> {
    return this.#enqueue('zeroGrads', (h) => loadNative().zeroGrads(h));
  }

  /** Forward + backward of one micro-batch, adding scale·∂(Σ token losses)/∂θ into the gradients. */
  accumulateGrads(
    sequences: readonly ScoredSequence[] | readonly GrpoSequence[],
    loss: Loss,
    scale: number,
  ): Promise<LossSums> {
    let batch: NativeSequence[];
    try {
      checkLoss(loss);
      checkFinite(scale, 'scale');
      batch = this.#batch(sequences, loss, 'sequences');
    } catch (err) {
      return Promise.reject(toKernelError(err));
    }
    return this.#enqueue('accumulateGrads', (h) => loadNative().accumulateGrads(h, batch, loss, scale));
  }

  /** Clips the accumulated gradients and applies AdamW; resolves with the pre-clip global grad norm. */
  applyOptimizer(optimizer: AdamWParams): Promise<number> {
    try {
      checkAdamW(optimizer);
    } catch (err) {
      return Promise.reject(toKernelError(err));
    }
    const opt = { ...optimizer };
    return this.#enqueue('applyOptimizer', (h) => loadNative().applyOptimizer(h, opt));
  }

  /** A copy of the flat parameter buffer (layout: `paramTable`). */
  getParams(): Promise<Float32Array> {
    return this.#enqueue('getParams', (h) => loadNative().getParams(h));
  }

  /** Replaces every parameter (e.g. a policy version received from the learner). */
  setParams(params: Float32Array): Promise<void> {
    try {
      checkF32(params, 'params', this.numParams);
    } catch (err) {
      return Promise.reject(toKernelError(err));
    }
    return this.#enqueue('setParams', (h) => loadNative().setParams(h, params));
  }

  /** A copy of the flat gradient buffer (same layout as the parameters). */
  getGrads(): Promise<Float32Array> {
    return this.#enqueue('getGrads', (h) => loadNative().getGrads(h));
  }

  /** Replaces every gradient (e.g. with the all-reduced mean). */
  setGrads(grads: Float32Array): Promise<void> {
    try {
      checkF32(grads, 'grads', this.numParams);
    } catch (err) {
      return Promise.reject(toKernelError(err));
    }
    return this.#enqueue('setGrads', (h) => loadNative().setGrads(h, grads));
  }

  // ---- data parallelism (a Collective of the learner group; see collective.ts and docs/kernels.md) ----

  /**
   * Sums the flat gradient buffer across the group, in place (no copy through JS). Runs on this model's
   * queue and on the Collective's.
   */
  allreduceGrads(c: Collective): Promise<void> {
    return this.#enqueue('allreduceGrads', (h) =>
      c.run('allreduceGrads', (ch) => loadNative().allreduceGrads(h, ch)),
    );
  }

  /**
   * ZeRO-1 step: reduce-scatter the gradients, AdamW on this rank's slice of the parameters (rank r of W owns
   * [⌊r·n/W⌋, ⌊(r+1)·n/W⌋); only that slice's moments are kept), all-gather the parameters. Clipping uses the
   * global norm, which it returns. Equals allreduceGrads + applyOptimizer within FP32 rounding. The gradient
   * buffer is zero afterwards. All-or-nothing: if a collective fails, parameters, moments and step count are
   * unchanged on this rank. A full optimizer state (fresh, or restored by setOptimizerState/loadOptimizer) is
   * cut down to this rank's slice on the first sharded step, so a checkpoint restores onto any rank count.
   */
  applyOptimizerSharded(c: Collective, optimizer: AdamWParams): Promise<number> {
    try {
      checkAdamW(optimizer);
    } catch (err) {
      return Promise.reject(toKernelError(err));
    }
    const opt = { ...optimizer };
    return this.#enqueue('applyOptimizerSharded', (h) =>
      c.run('applyOptimizerSharded', (ch) => loadNative().applyOptimizerSharded(h, ch, opt)),
    );
  }

  /**
   * Collective: makes the optimizer state whole on every rank (all-gather of the slices), so that
   * getOptimizerState / saveOptimizer / save({ optimizer: true }) work (the leader writes the checkpoint). The
   * next sharded step keeps only this rank's slice again. The ranks must agree on the step count.
   */
  gatherOptimizerState(c: Collective): Promise<void> {
    return this.#enqueue('gatherOptimizerState', (h) =>
      c.run('gatherOptimizerState', (ch) => loadNative().gatherOptimizerState(h, ch)),
    );
  }

  /** This rank's slice of the optimizer state (the whole state, offset 0, when it is not sharded). */
  getOptimizerShard(): Promise<OptimizerShard> {
    return this.#enqueue('getOptimizerShard', (h) => loadNative().getOptimizerShard(h));
  }

  /** Replaces the optimizer state by a slice (e.g. one rank's shard written by that rank). */
  setOptimizerShard(shard: OptimizerShard): Promise<void> {
    try {
      checkInt(shard.offset, 'shard.offset', 0, this.numParams);
      checkInt(shard.step, 'shard.step', 0, Number.MAX_SAFE_INTEGER);
      checkF32(shard.m, 'shard.m');
      checkF32(shard.v, 'shard.v', shard.m.length);
      if (shard.offset + shard.m.length > this.numParams) {
        throw new InvalidInputError(
          `shard [${shard.offset}, ${shard.offset + shard.m.length}) exceeds ${this.numParams} parameters`,
        );
      }
    } catch (err) {
      return Promise.reject(toKernelError(err));
    }
    const s = { offset: shard.offset, m: shard.m, v: shard.v, step: shard.step };
    return this.#enqueue('setOptimizerShard', (h) => loadNative().setOptimizerShard(h, s));
  }

  getOptimizerState(): Promise<OptimizerState> {
    return this.#enqueue('getOptimizerState', (h) => loadNative().getOptimizerState(h));
  }

  setOptimizerState(state: OptimizerState): Promise<void> {
    try {
      checkF32(state.m, 'state.m', this.numParams);
      checkF32(state.v, 'state.v', this.numParams);
      checkInt(state.step, 'state.step', 0, Number.MAX_SAFE_INTEGER);
    } catch (err) {
      return Promise.reject(toKernelError(err));
    }
    return this.#enqueue('setOptimizerState', (h) =>
      loadNative().setOptimizerState(h, state.m, state.v, state.step),
    );
  }

  /** An independent frozen copy of the current weights (the GRPO reference model). */
  cloneFrozen(): Promise<Model> {
    return this.#enqueue('cloneFrozen', async (h) => new Model(await loadNative().cloneFrozen(h)));
  }

  /** Writes the weights as one F32 safetensors file with Hugging Face names (atomically). */
  saveWeights(path: string): Promise<void> {
    return this.#enqueue('saveWeights', (h) => loadNative().saveWeights(h, path));
  }

  /** Replaces the weights from safetensors files (F32/BF16/F16); all-or-nothing. */
  loadWeights(files: readonly string[]): Promise<void> {
    if (!isList(files) || files.length === 0 || files.some((f) => typeof f !== 'string')) {
      return Promise.reject(new InvalidInputError('files must be a non-empty array of paths'));
    }
    const list = [...files];
    return this.#enqueue('loadWeights', (h) => loadNative().loadWeights(h, list));
  }

  saveOptimizer(path: string): Promise<void> {
    return this.#enqueue('saveOptimizer', (h) => loadNative().saveOptimizer(h, path));
  }

  loadOptimizer(path: string): Promise<void> {
    return this.#enqueue('loadOptimizer', (h) => loadNative().loadOptimizer(h, path));
  }

  /**
   * Saves a checkpoint directory loadable by `Model.load` (and by transformers): config.json,
   * model.safetensors, and with `optimizer: true` optimizer.safetensors.
   */
  async save(dir: string, options: { readonly optimizer: boolean } = { optimizer: false }): Promise<void> {
    try {
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'config.json'), JSON.stringify(toHfConfig(this.config), null, 2) + '\n');
    } catch (err) {
      throw new KernelIoError(`saving ${dir}: ${(err as Error).message}`, { cause: err });
    }
    await this.saveWeights(join(dir, WEIGHTS_FILE));
    if (options.optimizer) await this.saveOptimizer(join(dir, OPTIMIZER_FILE));
  }
}
