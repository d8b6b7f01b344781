// The registry of `spark` subcommands: each module exports a `register(program)` function; add one line
// here per command module.
import type { Command } from 'commander';

type Register = (program: Command) => void;

export const commandModules: readonly Register[] = [];
