// The `spark` command line: builds the commander program from the command modules and runs it.
import { Command, CommanderError } from 'commander';

import { commandModules } from './commands/index.js';

export function buildProgram(): Command {
  const program = new Command('spark')
    .description('Spark: train one model as both policy and generative reward model (SPARK)')
    .version('0.1.0')
    .exitOverride();
  for (const register of commandModules) register(program);
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    process.stderr.write(`spark: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}
