// Compile-time check, run by `tsc -b` (`pnpm typecheck`, part of `pnpm check` and CI): the declarations napi-rs
// generates from the Rust exports (kernels/index.d.ts, rewritten by every `napi build`) must match the binding
// this wrapper is written against (NativeBinding in native.ts). Drift fails the type check:
//   - a function the wrapper calls is missing or renamed in Rust;
//   - Rust would reject an argument type the wrapper passes (parameters compare contravariantly, since
//     NativeBinding declares properties, not methods), or takes more required arguments;
//   - Rust returns something the wrapper does not expect (e.g. a field renamed or removed from a result);
//   - Rust exports a function NativeBinding does not declare.
// No runtime code: this file only declares types.
import type * as Generated from '../index.js';
import type { NativeBinding } from './native.js';

type Assert<T extends true> = T;
type Extends<A, B> = [A] extends [B] ? true : false;

/** Exports of the generated declarations that are values other than functions of the binding. */
type GeneratedClasses = 'NativeModel' | 'NativeCollective';

export type GeneratedSatisfiesNativeBinding = Assert<Extends<typeof Generated, NativeBinding>>;
export type NoUndeclaredExports = Assert<
  Extends<Exclude<keyof typeof Generated, keyof NativeBinding | GeneratedClasses>, never>
>;
