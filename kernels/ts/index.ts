// @spark/kernels: the typed TypeScript API over the native learner and sampler (kernels/src, Rust behind
// Node-API). Services import only this module.
//
//   const model = await Model.create('tiny', 1);            // or Model.load('/path/to/Qwen2.5-0.5B')
//   const stats = await model.trainStep([[...]], { kind: 'sft' }, { ...DEFAULT_ADAMW, lr: 1e-3 });
//   const out = await model.sample({ prompts, temperature: 0.8, topP: 0.95, maxNewTokens: 64, stopTokens: [0], seed: 7 });
//   model.free();
import { loadNative } from './native.js';

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

/** Models holding native memory in this process (created, neither freed nor garbage-collected). */
export function liveModels(): number {
  return loadNative().liveModels();
}
export type { NativeBinding, NativeCollectiveHandle, NativeModelHandle } from './native.js';
