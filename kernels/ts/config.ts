// Model configuration in TypeScript: the camelCase `ModelConfig` the API uses, presets, and the Hugging Face
// `config.json` mapping (Qwen2ForCausalLM / LlamaForCausalLM field names) in both directions. config.json is
// parsed here, in TS, with one ConfigError listing every problem; the binding receives typed values only and
// re-validates them (ModelConfig::validate in Rust: sizes, divisibility, bounds).
import { ConfigError, toKernelError } from './errors.js';
import { loadNative, type NativeConfig } from './native.js';

/** The decoder's shape: Qwen2 layout (GQA, optional q/k/v bias, RMSNorm, SwiGLU, rotary positions). */
export interface ModelConfig {
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numHiddenLayers: number;
  readonly numAttentionHeads: number;
  readonly numKeyValueHeads: number;
  readonly vocabSize: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly tieWordEmbeddings: boolean;
  readonly maxPositionEmbeddings: number;
  /** q/k/v projection biases: true for Qwen2, false for Llama. */
  readonly attentionBias: boolean;
}

/** Presets for training from scratch on CPU (see kernels/src/model/config.rs for their sizes). */
export type PresetName = 'tiny' | 'small' | 'demo';

/** Largest config.json accepted (real ones are ~1 KiB). */
export const MAX_CONFIG_JSON_BYTES = 1 << 20;

export function toNativeConfig(c: ModelConfig): NativeConfig {
  return {
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads,
    num_key_value_heads: c.numKeyValueHeads,
    vocab_size: c.vocabSize,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieWordEmbeddings,
    max_position_embeddings: c.maxPositionEmbeddings,
    attention_bias: c.attentionBias,
  };
}

/** The shortest decimal that rounds to the same f32 (the binding stores eps and theta as f32). */
function shortestF32(x: number): number {
  for (let p = 1; p <= 9; p++) {
    const y = Number(x.toPrecision(p));
    if (Math.fround(y) === Math.fround(x)) return y;
  }
  return x;
}

export function fromNativeConfig(n: NativeConfig): ModelConfig {
  return Object.freeze({
    hiddenSize: n.hidden_size,
    intermediateSize: n.intermediate_size,
    numHiddenLayers: n.num_hidden_layers,
    numAttentionHeads: n.num_attention_heads,
    numKeyValueHeads: n.num_key_value_heads,
    vocabSize: n.vocab_size,
    rmsNormEps: shortestF32(n.rms_norm_eps),
    ropeTheta: shortestF32(n.rope_theta),
    tieWordEmbeddings: n.tie_word_embeddings,
    maxPositionEmbeddings: n.max_position_embeddings,
    attentionBias: n.attention_bias,
  });
}

/** The names `presetConfig` accepts (as compiled into the addon). */
export function presetNames(): string[] {
  return loadNative().presetNames();
}

/** A preset's configuration; ConfigError for an unknown name. */
export function presetConfig(name: PresetName): ModelConfig {
  const n = loadNative().presetConfig(name);
  if (n === null) {
    throw new ConfigError(`unknown preset ${JSON.stringify(name)} (known: ${presetNames().join(', ')})`);
  }
  return fromNativeConfig(n);
}

/** Checks a configuration with the native rules and returns its parameter count; ConfigError if invalid. */
export function validateConfig(config: ModelConfig): number {
  checkShape(config, 'config');
  try {
    return loadNative().validateConfig(toNativeConfig(config));
  } catch (err) {
    throw new ConfigError(toKernelError(err).message, { cause: err });
  }
}

function checkShape(c: ModelConfig, where: string): void {
  const problems: string[] = [];
  const ints: (keyof ModelConfig)[] = [
    'hiddenSize',
    'intermediateSize',
    'numHiddenLayers',
    'numAttentionHeads',
    'numKeyValueHeads',
    'vocabSize',
    'maxPositionEmbeddings',
  ];
  for (const k of ints) {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      problems.push(`${k} must be a positive integer (got ${String(v)})`);
    }
  }
  for (const k of ['rmsNormEps', 'ropeTheta'] as const) {
    const v = c[k];
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      problems.push(`${k} must be a positive finite number (got ${String(v)})`);
    }
  }
  for (const k of ['tieWordEmbeddings', 'attentionBias'] as const) {
    if (typeof c[k] !== 'boolean') problems.push(`${k} must be a boolean (got ${String(c[k])})`);
  }
  if (problems.length) throw new ConfigError(`${where}: ${problems.join('; ')}`);
}

type Json = Record<string, unknown>;

/**
 * Parses a Hugging Face config.json (text) of a Qwen2ForCausalLM or LlamaForCausalLM checkpoint into a
 * ModelConfig. Every problem is listed in one ConfigError. Defaults follow transformers' Qwen2Config /
 * LlamaConfig where a field may be absent (num_key_value_heads = num_attention_heads, rope_theta = 10000,
 * tie_word_embeddings = false); unsupported features (rope_scaling, sliding window, other activations) fail.
 */
export function parseHfConfig(text: string, source = 'config.json'): ModelConfig {
  if (text.length > MAX_CONFIG_JSON_BYTES) {
    throw new ConfigError(`${source}: ${text.length} bytes exceeds the ${MAX_CONFIG_JSON_BYTES}-byte limit`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`${source}: not valid JSON: ${(err as Error).message}`, { cause: err });
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`${source}: must be a JSON object`);
  }
  const j = raw as Json;
  const problems: string[] = [];
  const arch = Array.isArray(j.architectures) ? (j.architectures as unknown[]) : [];
  const modelType = typeof j.model_type === 'string' ? j.model_type : null;
  const isQwen2 = modelType === 'qwen2' || arch.includes('Qwen2ForCausalLM');
  const isLlama = modelType === 'llama' || arch.includes('LlamaForCausalLM');
  if (!isQwen2 && !isLlama) {
    problems.push(
      `unsupported architecture (model_type ${JSON.stringify(modelType)}, architectures ${JSON.stringify(arch)}); expected qwen2 or llama`,
    );
  }
  const int = (k: string, dflt: number | null = null): number => {
    const v = j[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      problems.push(`${k} must be a positive integer (got ${JSON.stringify(v)})`);
      return 0;
    }
    return v;
  };
  const num = (k: string, dflt: number | null = null): number => {
    const v = j[k] ?? dflt;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      problems.push(`${k} must be a positive number (got ${JSON.stringify(v)})`);
      return 0;
    }
    return v;
  };
  const bool = (k: string, dflt: boolean): boolean => {
    const v = j[k] ?? dflt;
    if (typeof v !== 'boolean') {
      problems.push(`${k} must be a boolean (got ${JSON.stringify(v)})`);
      return dflt;
    }
    return v;
  };
  const heads = int('num_attention_heads');
  const hidden = int('hidden_size');
  const config: ModelConfig = Object.freeze({
    hiddenSize: hidden,
    intermediateSize: int('intermediate_size'),
    numHiddenLayers: int('num_hidden_layers'),
    numAttentionHeads: heads,
    numKeyValueHeads: int('num_key_value_heads', heads || null),
    vocabSize: int('vocab_size'),
    rmsNormEps: num('rms_norm_eps', 1e-6),
    ropeTheta: num('rope_theta', 10000),
    tieWordEmbeddings: bool('tie_word_embeddings', false),
    maxPositionEmbeddings: int('max_position_embeddings'),
    // Qwen2 always has q/k/v biases; Llama has them only with attention_bias: true.
    attentionBias: isQwen2 ? true : bool('attention_bias', false),
  });
  if (j.hidden_act !== undefined && j.hidden_act !== 'silu') {
    problems.push(`hidden_act ${JSON.stringify(j.hidden_act)} is unsupported (only silu)`);
  }
  if (j.rope_scaling !== undefined && j.rope_scaling !== null) {
    problems.push('rope_scaling is unsupported (must be null or absent)');
  }
  if (j.use_sliding_window === true) problems.push('use_sliding_window: true is unsupported');
  if (j.head_dim !== undefined && heads > 0 && j.head_dim !== hidden / heads) {
    problems.push(`head_dim ${JSON.stringify(j.head_dim)} must equal hidden_size / num_attention_heads`);
  }
  if (problems.length) throw new ConfigError(`${source}: ${problems.join('; ')}`);
  try {
    loadNative().validateConfig(toNativeConfig(config));
  } catch (err) {
    throw new ConfigError(`${source}: ${toKernelError(err).message}`, { cause: err });
  }
  return config;
}

/** The config.json this package writes for a model (loadable by `parseHfConfig` and by transformers). */
export function toHfConfig(c: ModelConfig): Json {
  const common = {
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads,
    num_key_value_heads: c.numKeyValueHeads,
    vocab_size: c.vocabSize,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    tie_word_embeddings: c.tieWordEmbeddings,
    max_position_embeddings: c.maxPositionEmbeddings,
    hidden_act: 'silu',
    torch_dtype: 'float32',
  };
  return c.attentionBias
    ? { architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', ...common, use_sliding_window: false }
    : { architectures: ['LlamaForCausalLM'], model_type: 'llama', ...common, attention_bias: false };
}
