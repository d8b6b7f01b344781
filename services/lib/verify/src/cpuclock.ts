// Per-thread CPU clocks from Linux /proc, so the symbolic budget is charged in the CPU time a thread
// actually used and not in wall time, which on a loaded machine includes however long the thread waited
// to be scheduled (docs/verifier.md §3).
//   - /proc/self/task/<tid>/schedstat, field 1: nanoseconds on a CPU (preferred: exact);
//   - /proc/self/task/<tid>/stat, fields 14 + 15 (utime + stime): clock ticks of USER_HZ, which Linux
//     fixes at 100 for user space on every architecture Node supports (10 ms resolution).
// A clock keeps its file open and re-reads it at offset 0 (one pread, a few µs). Where /proc is missing
// (not Linux) every function here returns null and callers fall back to wall time.

import { closeSync, openSync, readSync, readlinkSync } from 'node:fs';

/** Clock ticks per second of the `stat` utime/stime fields (USER_HZ, `getconf CLK_TCK`). */
export const USER_HZ = 100;

/** CPU ms from the text of a `schedstat` file (its first field is ns on a CPU); null if malformed. */
export function parseSchedstat(text: string): number | null {
  const m = /^(\d+) \d+ \d+/.exec(text);
  return m?.[1] === undefined ? null : Number(m[1]) / 1e6;
}

/**
 * Run-queue ms from the text of a `schedstat` file (its second field: ns spent runnable but waiting for a
 * CPU, counted up to the thread's last time on a CPU); null if malformed.
 */
export function parseSchedstatWait(text: string): number | null {
  const m = /^\d+ (\d+) \d+/.exec(text);
  return m?.[1] === undefined ? null : Number(m[1]) / 1e6;
}

/**
 * CPU ms (utime + stime, fields 14 and 15) from the text of a `stat` file; null if malformed. The
 * command name (field 2) is in parentheses and may itself hold spaces or parentheses, so fields are
 * counted from the last ')'.
 */
export function parseStat(text: string, hz = USER_HZ): number | null {
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  // After ") ": field 3 (state) is at index 0, so field n is at index n - 3.
  const f = text.slice(close + 2).split(' ');
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  if (!Number.isInteger(utime) || !Number.isInteger(stime) || f[11] === '' || f[12] === '') return null;
  return ((utime + stime) * 1000) / hz;
}

/** The kernel thread id of the calling thread (main or worker), or null without /proc. */
export function currentThreadId(): number | null {
  try {
    // "<pid>/task/<tid>"
    const m = /\/task\/(\d+)$/.exec(readlinkSync('/proc/thread-self'));
    return m?.[1] === undefined ? null : Number(m[1]);
  } catch {
    return null;
  }
}

/** A thread's CPU clock. */
export interface CpuClock {
  /** `schedstat` (ns, exact) or `stat` (10 ms ticks). */
  readonly source: 'schedstat' | 'stat';
  /** CPU ms the thread has used since it started; null once it cannot be read (the thread exited). */
  read(): number | null;
  /**
   * Ms the thread has spent runnable but waiting for a CPU since it started (`schedstat` only: null from
   * `stat`, or once it cannot be read). With `read()` it tells a starved thread from a blocked one.
   */
  readWait(): number | null;
  /**
   * Whether the thread is runnable (state `R`: on a CPU or waiting for one) from `stat` field 3; null
   * once it cannot be read. Run-queue time counts a wait only once it ends, so a starved thread is told
   * from a blocked one by this state.
   */
  runnable(): boolean | null;
  /**
   * `read()` and `readWait()` from one read of the file (the pool samples both when it dispatches a job);
   * `waitMs` is null from `stat`. Null once the clock cannot be read.
   */
  sample(): CpuSample | null;
  close(): void;
}

/** One reading of a thread's clock. */
export interface CpuSample {
  readonly cpuMs: number;
  readonly waitMs: number | null;
}

/**
 * The first two fields of a `schedstat` file (ns on a CPU, ns runnable but waiting) read straight from
 * its bytes, without decoding a string (the pool reads the clock on every job); null if malformed.
 */
export function parseSchedstatBytes(buf: Uint8Array, n: number): CpuSample | null {
  let i = 0;
  const field = (): number | null => {
    const start = i;
    let v = 0;
    for (; i < n; i++) {
      const c = buf[i] as number;
      if (c < 48 || c > 57) break;
      v = v * 10 + (c - 48);
    }
    return i === start ? null : v;
  };
  const cpu = field();
  if (cpu === null || i >= n || buf[i++] !== 32) return null;
  const wait = field();
  if (wait === null || i >= n || buf[i] !== 32) return null;
  return { cpuMs: cpu / 1e6, waitMs: wait / 1e6 };
}

/** Whether the text of a `stat` file says the thread is runnable (state `R`); null if malformed. */
export function parseStatRunnable(text: string): boolean | null {
  const close = text.lastIndexOf(')');
  const state = close < 0 ? '' : text.slice(close + 2, close + 3);
  return /^[A-Za-z]$/.test(state) ? state === 'R' : null;
}

const BUF_BYTES = 1024;

interface OpenFile {
  readonly read: () => number | null;
  readonly readText: () => string | null;
  /** Reads the file into its buffer; returns the byte count, or null once it cannot be read. */
  readonly readBytes: () => number | null;
  readonly buf: Buffer;
  readonly close: () => void;
}

function openFile(path: string, parse: (text: string) => number | null): OpenFile | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  const buf = Buffer.allocUnsafe(BUF_BYTES);
  const readBytes = (): number | null => {
    try {
      return readSync(fd, buf, 0, BUF_BYTES, 0);
    } catch {
      return null;
    }
  };
  const readText = (): string | null => {
    const n = readBytes();
    return n === null ? null : buf.toString('latin1', 0, n);
  };
  const read = (): number | null => {
    const text = readText();
    return text === null ? null : parse(text);
  };
  if (read() === null) {
    closeSync(fd);
    return null;
  }
  const close = (): void => {
    if (fd < 0) return;
    try {
      closeSync(fd);
    } catch {
      // already closed
    }
    fd = -1;
  };
  return { read, readText, readBytes, buf, close };
}

/**
 * Opens the CPU clock of thread `tid` of this process (`schedstat` when readable, else `stat`); null where
 * neither can be read. The caller closes it.
 */
export function openThreadClock(tid: number): CpuClock | null {
  const base = `/proc/self/task/${tid}`;
  for (const [source, parse] of [
    ['schedstat', parseSchedstat],
    ['stat', (t: string) => parseStat(t)],
  ] as const) {
    const f = openFile(`${base}/${source}`, parse);
    if (f === null) continue;
    const readWait = (): number | null => {
      if (source !== 'schedstat') return null;
      const text = f.readText();
      return text === null ? null : parseSchedstatWait(text);
    };
    const stat = source === 'stat' ? f : openFile(`${base}/stat`, parseStatRunnableAsNumber);
    const runnable = (): boolean | null => {
      const text = stat?.readText() ?? null;
      return text === null ? null : parseStatRunnable(text);
    };
    const close = (): void => {
      f.close();
      if (stat !== f) stat?.close();
    };
    const sample = (): CpuSample | null => {
      if (source === 'stat') {
        const cpuMs = f.read();
        return cpuMs === null ? null : { cpuMs, waitMs: null };
      }
      const n = f.readBytes();
      return n === null ? null : parseSchedstatBytes(f.buf, n);
    };
    const read = source === 'stat' ? f.read : (): number | null => sample()?.cpuMs ?? null;
    return { source, read, readWait, runnable, sample, close };
  }
  return null;
}

function parseStatRunnableAsNumber(text: string): number | null {
  const r = parseStatRunnable(text);
  return r === null ? null : Number(r);
}

let own: CpuClock | null | undefined;

/**
 * CPU ms used so far by the calling thread, or null without /proc. Opened once per thread (module state
 * is per thread in Node).
 */
export function threadCpuMs(): number | null {
  if (own === undefined) {
    const tid = currentThreadId();
    own = tid === null ? null : openThreadClock(tid);
  }
  return own === null ? null : own.read();
}
