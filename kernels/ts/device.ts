// Where a model lives: 'cpu' (the default) or 'cuda:N', as `Model.create/load(…, { device })` and the services'
// SPARK_DEVICE take it; and `cudaProbe()`, what this machine has for the CUDA backend (`spark doctor`).
// The CUDA backend is built but not yet verified on a GPU (docs/kernels.md): a 'cuda:N' model is refused with
// CudaUnavailableError naming what is missing, or — where driver, libraries and device are all present —
// saying the CUDA model is not wired in this build.
import { InvalidInputError } from './errors.js';
import { loadNative } from './native.js';

/** A model's device: 'cpu' or 'cuda:N' (N = 0..1023, the driver's ordinal after CUDA_VISIBLE_DEVICES). */
export type Device = 'cpu' | `cuda:${number}`;

/** The accepted spellings (the native side parses them again, identically). */
export const DEVICE_PATTERN = /^(cpu|cuda:(0|[1-9][0-9]{0,2}|10[01][0-9]|102[0-3]))$/;

/** Checks a device string: returns it typed, or throws InvalidInputError quoting it (at most 64 chars). */
export function parseDevice(value: string): Device {
  if (typeof value === 'string' && DEVICE_PATTERN.test(value)) {
    return value as Device;
  }
  throw new InvalidInputError(
    `device must be 'cpu' or 'cuda:N' (N = 0..1023), got ${JSON.stringify(String(value).slice(0, 64))}`,
  );
}

/** One CUDA library: the file (or soname on the system path) found, or why it is missing. */
export interface CudaLibStatus {
  readonly what: string;
  readonly found: string | null;
  readonly error: string | null;
}

export interface CudaDeviceInfo {
  readonly ordinal: number;
  readonly name: string;
  /** Compute capability, e.g. '9.0'. */
  readonly capability: string;
  readonly totalMemoryBytes: number;
  readonly multiprocessors: number;
}

export interface CudaProbe {
  /** Directories searched before the system path (SPARK_CUDA_LIB_DIR and its nvidia/x/lib folders). */
  readonly libDirs: readonly string[];
  readonly driver: CudaLibStatus;
  readonly nvrtc: CudaLibStatus;
  readonly cublasLt: CudaLibStatus;
  /** The CUDA version the driver supports, e.g. '13.0'; null without a working driver. */
  readonly driverVersion: string | null;
  readonly nvrtcVersion: string | null;
  readonly devices: readonly CudaDeviceInfo[];
  /** cuInit or a device query failed (the driver's error). */
  readonly driverError: string | null;
}

/** Looks for the CUDA driver, NVRTC and cuBLASLt and lists the devices; never throws for a missing library. */
export function cudaProbe(): CudaProbe {
  const p = loadNative().cudaProbe();
  const lib = (l: { what: string; found?: string; error?: string }): CudaLibStatus => ({
    what: l.what,
    found: l.found ?? null,
    error: l.error ?? null,
  });
  return {
    libDirs: p.libDirs,
    driver: lib(p.driver),
    nvrtc: lib(p.nvrtc),
    cublasLt: lib(p.cublasLt),
    driverVersion: p.driverVersion ?? null,
    nvrtcVersion: p.nvrtcVersion ?? null,
    devices: p.devices.map((d) => ({ ...d })),
    driverError: p.driverError ?? null,
  };
}
