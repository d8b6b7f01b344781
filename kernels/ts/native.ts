// The native surface: finds and loads the addon built by `napi build --platform` for this platform
// (`spark-kernels.<platform>-<arch>[-<abi>].node` in kernels/), and declares the raw functions it exports.
// Nothing here validates or re-types: index.ts wraps this surface in the typed API the services use.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AddonNotBuiltError } from './errors.js';

/** An opaque native model handle (a Node-API external); only the binding can create or read one. */
export type NativeModelHandle = { readonly __brand: 'SparkNativeModel' };

/** Config object with Hugging Face field names, as the binding reads and returns it. */
export interface NativeConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  vocab_size: number;
  rms_norm_eps: number;
  rope_theta: number;
  tie_word_embeddings: boolean;
  max_position_embeddings: number;
  attention_bias: boolean;
}

export interface NativeSequence {
  tokens: Uint32Array;
  promptLen: number;
  advantage: number | null;
  oldLogprobs: Float32Array | null;
  refLogprobs: Float32Array | null;
}

export type NativeLoss = { kind: 'sft' } | { kind: 'grpo'; clipEps: number; klCoef: number };

export interface NativeAdamW {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
  maxGradNorm: number;
}

export interface NativeSampleRequest {
  prompts: Uint32Array[];
  temperature: number;
  topP: number;
  maxNewTokens: number;
  stopTokens: Uint32Array;
  seed: number;
}

export interface NativeSample {
  tokens: Uint32Array;
  logprobs: Float32Array;
  finish: 'stop' | 'length';
}

export interface NativeTrainStats {
  loss: number;
  kl: number;
  clipFraction: number;
  gradNorm: number;
  tokens: number;
}

export interface NativeLossSums {
  lossSum: number;
  klSum: number;
  clipped: number;
  tokens: number;
}

export interface NativeParamInfo {
  name: string;
  shape: number[];
  offset: number;
  length: number;
}

export interface NativeModelInfo {
  id: number;
  config: NativeConfig;
  numParams: number;
  frozen: boolean;
  closed: boolean;
  params: NativeParamInfo[];
}

/** The raw functions of the addon (see kernels/src/napi/exports.rs and models.rs). */
export interface NativeBinding {
  version(): string;
  debugSum(a: Float32Array, b: Uint32Array): number;
  debugScale(values: Float32Array, factor: number): Promise<Float32Array>;
  debugPanic(mode: 'sync' | 'async' | 'thread'): Promise<void>;
  debugSleep(ms: number): Promise<number>;
  debugPanicInModel(h: NativeModelHandle): Promise<void>;

  liveModels(): number;
  presetNames(): string[];
  presetConfig(name: string): NativeConfig | null;
  validateConfig(config: NativeConfig): number;
  createModel(config: NativeConfig, seed: number): Promise<NativeModelHandle>;
  modelInfo(h: NativeModelHandle): NativeModelInfo;
  freeModel(h: NativeModelHandle): boolean;
  forward(h: NativeModelHandle, tokens: Uint32Array, batch: number, seq: number): Promise<Float32Array>;
  logprobs(h: NativeModelHandle, sequences: NativeSequence[]): Promise<Float32Array[]>;
  sample(h: NativeModelHandle, request: NativeSampleRequest): Promise<NativeSample[]>;
  trainStep(
    h: NativeModelHandle,
    microBatches: NativeSequence[][],
    loss: NativeLoss,
    optimizer: NativeAdamW,
  ): Promise<NativeTrainStats>;
  zeroGrads(h: NativeModelHandle): Promise<void>;
  accumulateGrads(
    h: NativeModelHandle,
    sequences: NativeSequence[],
    loss: NativeLoss,
    scale: number,
  ): Promise<NativeLossSums>;
  applyOptimizer(h: NativeModelHandle, optimizer: NativeAdamW): Promise<number>;
  getParams(h: NativeModelHandle): Promise<Float32Array>;
  setParams(h: NativeModelHandle, params: Float32Array): Promise<void>;
  getGrads(h: NativeModelHandle): Promise<Float32Array>;
  setGrads(h: NativeModelHandle, grads: Float32Array): Promise<void>;
  getOptimizerState(h: NativeModelHandle): Promise<{ m: Float32Array; v: Float32Array; step: number }>;
  setOptimizerState(h: NativeModelHandle, m: Float32Array, v: Float32Array, step: number): Promise<void>;
  cloneFrozen(h: NativeModelHandle): Promise<NativeModelHandle>;
  saveWeights(h: NativeModelHandle, path: string): Promise<void>;
  loadWeights(h: NativeModelHandle, files: string[]): Promise<void>;
  saveOptimizer(h: NativeModelHandle, path: string): Promise<void>;
  loadOptimizer(h: NativeModelHandle, path: string): Promise<void>;
}

const kernelsDir = join(dirname(fileURLToPath(import.meta.url)), '..');

/** The napi-rs platform suffix for this process, e.g. `linux-x64-gnu`, `darwin-arm64`, `win32-x64-msvc`. */
export function platformTriple(): string {
  const { platform, arch } = process;
  if (platform === 'linux') {
    const report = process.report.getReport() as { header?: { glibcVersionRuntime?: string } };
    const abi = report.header?.glibcVersionRuntime ? 'gnu' : 'musl';
    return `linux-${arch}-${abi}`;
  }
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

/** Where the addon is looked for: `$SPARK_KERNELS_ADDON` if set, else kernels/spark-kernels.<triple>.node. */
export function addonPath(): string {
  const override = process.env.SPARK_KERNELS_ADDON;
  if (override) return override;
  return join(kernelsDir, `spark-kernels.${platformTriple()}.node`);
}

let cached: { path: string; binding: NativeBinding } | null = null;

/** Loads the addon once per process; throws AddonNotBuiltError with the build command when missing. */
export function loadNative(): NativeBinding {
  const path = addonPath();
  if (cached?.path === path) return cached.binding;
  if (!existsSync(path)) {
    throw new AddonNotBuiltError(
      `the native addon is not built for ${platformTriple()}: ${path} does not exist. ` +
        'Build it with `pnpm --filter @spark/kernels run build` (needs cargo), or run `bash scripts/setup.sh`.',
    );
  }
  try {
    cached = { path, binding: createRequire(import.meta.url)(path) as NativeBinding };
  } catch (err) {
    throw new AddonNotBuiltError(
      `the native addon at ${path} could not be loaded: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  return cached.binding;
}
