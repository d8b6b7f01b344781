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
