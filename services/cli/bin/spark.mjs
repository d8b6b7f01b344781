#!/usr/bin/env node
// The `spark` executable: registers tsx so the TypeScript sources run directly, then runs the CLI.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/main.ts');
process.exitCode = await main(process.argv.slice(2));
