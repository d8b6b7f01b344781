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
  close(): void;
}

const BUF_BYTES = 1024;

function openFile(
  path: string,
  parse: (text: string) => number | null,
): Pick<CpuClock, 'read' | 'close'> | null {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return null;
  }
  const buf = Buffer.allocUnsafe(BUF_BYTES);
  const read = (): number | null => {
    try {
      const n = readSync(fd, buf, 0, BUF_BYTES, 0);
      return parse(buf.toString('latin1', 0, n));
    } catch {
      return null;
    }
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
  return { read, close };
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
    if (f !== null) return { source, ...f };
  }
  return null;
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
