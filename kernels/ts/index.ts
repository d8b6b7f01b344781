// @spark/kernels: the typed TypeScript API over the native learner and sampler (kernels/src, Rust behind
// Node-API). Services import only this module.
export * from './errors.js';
export { addonPath, loadNative, platformTriple } from './native.js';
export type { NativeBinding, NativeModelHandle } from './native.js';
