// @spark/kernels: the typed TypeScript API over the native learner and sampler (kernels/src, Rust behind
// Node-API). Services import only this module.
//
//   const model = await Model.create('tiny', 1);            // or Model.load('/path/to/Qwen2.5-0.5B')
//   const stats = await model.trainStep([[...]], { kind: 'sft' }, { ...DEFAULT_ADAMW, lr: 1e-3 });
//   const out = await model.sample({ prompts, temperature: 0.8, topP: 0.95, maxNewTokens: 64, stopTokens: [0], seed: 7 });
//   model.free();
import { loadNative, type NativeBackendInfo } from './native.js';

export * from './errors.js';
export {
  MAX_CONFIG_JSON_BYTES,
  parseHfConfig,
  presetConfig,
  presetNames,
  toHfConfig,
  validateConfig,
} from './config.js';
export type { ModelConfig, PresetName } from './config.js';
export { Collective, COLLECTIVE_LIMITS } from './collective.js';
export type { CollectiveOptions } from './collective.js';
export { cudaProbe, DEVICE_PATTERN, parseDevice } from './device.js';
export type { CudaDeviceInfo, CudaLibStatus, CudaProbe, Device } from './device.js';
export { checkpointFiles, DEFAULT_ADAMW, LIMITS, Model, readCheckpointConfig } from './model.js';
export type {
  AdamWParams,
  GrpoSequence,
  Loss,
  LossSums,
  ModelId,
  OptimizerShard,
  OptimizerState,
  ParamInfo,
  Sample,
  SampleRequest,
  ScoredSequence,
  TrainStats,
} from './model.js';
export { addonPath, loadNative, platformTriple } from './native.js';

/**
 * What computes this process's numbers on the CPU: the GEMM path, the BLAS library and OpenBLAS's kernel
 * set for this CPU, and the thread count. A run of one seed is bit-identical only where all of them agree:
 * OpenBLAS picks its kernels by CPU model, and each rounds differently (docs/kernels.md "Reproducibility").
 */
export function backendInfo(): NativeBackendInfo {
  return loadNative().backendInfo();
}

/**
 * How `Model.sample` parallelises a batch on this machine for a model of `numParams` parameters: in groups
 * of sequences per thread while the weights fit half the last-level cache, else with each product's columns
 * split over the threads (`SPARK_SAMPLE_MODE` forces one). The mode changes sampled numbers in the last bits,
 * so a run's path depends on it as on the GEMM path (docs/kernels.md "Reproducibility").
 */
export function sampleModeFor(numParams: number): 'groups' | 'split' {
  return loadNative().sampleModeFor(numParams) as 'groups' | 'split';
}

/** Models holding native memory in this process (created, neither freed nor garbage-collected). */
export function liveModels(): number {
  return loadNative().liveModels();
}
export type {
  NativeBackendInfo,
  NativeBinding,
  NativeCollectiveHandle,
  NativeModelHandle,
} from './native.js';
