// Test support for the CLI's tests (not a test file): run the real `spark` executable as a child process
// with a bound on its run time, and check whether a process is alive.
import { spawn } from 'node:child_process';
import { join } from 'node:path';

export const SPARK_BIN = join(import.meta.dirname, '../bin/spark.mjs');

export interface SparkRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs `spark ARGS` to completion; no SPARK_ADDRESS/TOKEN leak in from the caller. `timeoutMs` only bounds a
 * hung command (default 5 minutes: commands that take 30 s on an idle machine take minutes on a loaded
 * one); a killed command says so on its stderr, so the failure is not mistaken for the command's own.
 */
export function runSpark(
  args: string[],
  env: NodeJS.ProcessEnv = {},
  timeoutMs = 300_000,
  cwd?: string,
): Promise<SparkRun> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [SPARK_BIN, ...args], {
      env: { ...process.env, SPARK_ADDRESS: '', SPARK_AUTH_TOKEN: '', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      ...(cwd ? { cwd } : {}),
    });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => {
      stderr += `\n[runSpark: \`spark ${args.join(' ')}\` killed after ${timeoutMs} ms]\n`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** True while a process with this pid exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// Waiting for conditions: the shared test kit (one polling helper for every package's tests).
export { expectUnchanged, until } from '@spark/runtime/testing';
