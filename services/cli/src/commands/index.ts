// The registry of `spark` subcommands: each module exports a `register(program)` function; add one line
// here per command module.
import type { Command } from 'commander';

import { register as doctor } from './doctor.js';
import { register as verify } from './verify.js';

type Register = (program: Command) => void;

export const commandModules: readonly Register[] = [doctor, verify];
