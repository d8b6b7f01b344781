// The registry of `spark` subcommands: each module exports a `register(program)` function; add one line
// here per command module.
import type { Command } from 'commander';

import { register as cancel } from './cancel.js';
import { register as demo } from './demo.js';
import { register as doctor } from './doctor.js';
import { register as evalCommand } from './eval.js';
import { register as infer } from './infer.js';
import { register as jobs } from './jobs.js';
import { register as score } from './score.js';
import { register as submit } from './submit.js';
import { register as up } from './up.js';
import { register as verify } from './verify.js';
import { register as watch } from './watch.js';

type Register = (program: Command) => void;

export const commandModules: readonly Register[] = [
  doctor,
  verify,
  up,
  submit,
  watch,
  jobs,
  cancel,
  demo,
  evalCommand,
  score,
  infer,
];
