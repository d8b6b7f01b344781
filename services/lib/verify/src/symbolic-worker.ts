// The symbolic worker thread: owns one compute engine, warms it up, then answers comparison requests one
// at a time. The pool (pool.ts) terminates this thread when a request overruns its budget, so nothing here
// needs to be interruptible.

import { parentPort } from 'node:worker_threads';

import { compareAnswers } from './compare.js';
import { currentThreadId } from './cpuclock.js';
import { createSymbolicCheck } from './symbolic.js';
import type { WorkerReady, WorkerReply, WorkerRequest } from './pool.js';

const port = parentPort;
if (port === null) throw new Error('symbolic-worker must run in a worker thread');

// The engine reports compilation fallbacks on the console; in a worker that would interleave with the
// caller's output (JSONL on stdout for `spark verify`), so the worker's console is silenced.
const silent = (): void => undefined;
console.log = silent;
console.info = silent;
console.warn = silent;
console.error = silent;
console.debug = silent;

const check = createSymbolicCheck();

/** Runs the full comparison (fast rules again, then symbolic) for one request. */
function handle(req: WorkerRequest): WorkerReply {
  try {
    const verdict = compareAnswers(req.answer, req.label, {
      relTol: req.relTol,
      symbolic: (a, b, mode) => check(a, b, req.relTol, mode),
    });
    return { id: req.id, ok: true, equal: verdict.equal, rule: verdict.rule };
  } catch (err) {
    return { id: req.id, ok: false, error: err instanceof Error ? err.message : String(err) };
  }
}

// Warm-up: the first parses and evaluations of a fresh engine take 50-200 ms (lazy library loading and
// JIT); doing them before reporting ready keeps them out of the first real request's budget. They go
// through `handle`, the path a request takes (the rule chain, then symbolic), three times: after a single
// direct pass the first requests on a fresh worker still took 8-30 ms instead of about 1 ms, which on a
// loaded machine brought a simple check near a 50 ms budget.
const warm: [string, string][] = [
  ['\\sqrt{8}', '2\\sqrt{2}'],
  ['(x+1)^2', 'x^2+2x+1'],
  ['\\sin^2 x+\\cos^2 x', '1'],
  ['\\frac{\\sqrt{3}}{2}', '\\cos\\frac{\\pi}{6}'],
  ['\\log_2 8', '3'],
  ['\\ln(e^2)', '2'],
  ['y=2x+1', '2x-y+1=0'],
  ['\\tan x', '\\frac{\\sin x}{\\cos x}'],
  ['e^{i\\pi}', '-1'],
  ['\\sqrt[3]{27}', '3'],
];
for (let pass = 0; pass < 3; pass++) {
  for (const [a, b] of warm) handle({ id: 0, answer: a, label: b, relTol: 1e-6 });
}

port.on('message', (req: WorkerRequest) => port.postMessage(handle(req)));
// The kernel thread id lets the pool charge each request the CPU time this thread uses (pool.ts).
const ready: WorkerReady = { ready: true, tid: currentThreadId() };
port.postMessage(ready);
