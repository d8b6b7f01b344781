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

/** The raw functions of the addon (see kernels/src/napi/exports.rs). */
export interface NativeBinding {
  version(): string;
  debugSum(a: Float32Array, b: Uint32Array): number;
  debugScale(values: Float32Array, factor: number): Promise<Float32Array>;
  debugPanic(mode: 'sync' | 'async' | 'thread'): Promise<void>;
  debugSleep(ms: number): Promise<number>;
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

let cached: NativeBinding | null = null;

/** Loads the addon once per process; throws AddonNotBuiltError with the build command when missing. */
export function loadNative(): NativeBinding {
  if (cached) return cached;
  const path = addonPath();
  if (!existsSync(path)) {
    throw new AddonNotBuiltError(
      `the native addon is not built for ${platformTriple()}: ${path} does not exist. ` +
        'Build it with `pnpm --filter @spark/kernels run build` (needs cargo), or run `bash scripts/setup.sh`.',
    );
  }
  try {
    cached = createRequire(import.meta.url)(path) as NativeBinding;
  } catch (err) {
    throw new AddonNotBuiltError(
      `the native addon at ${path} could not be loaded: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  return cached;
}
