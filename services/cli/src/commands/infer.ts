// `spark infer CHECKPOINT "question"`: one greedy answer from a checkpoint, the question asked with the
// answer-format instruction; `--reflect` runs test-time self-reflection (docs/method.md "Test-time self-reflection") and prints
// its trace (every model call: answer, self-judge verdicts, re-solves). `--answer GOLD` also scores the
// answer(s); `--json` prints the whole result as JSON.
import { Option, type Command } from 'commander';

import { evaluateProblems } from '@spark/method/evaluation';

import { intOption, variantOption } from '../eval/options.js';

interface InferCliOptions {
  reflect?: boolean;
  answer?: string;
  variant: string;
  maxNewTokens: string;
  tokenizer?: string;
  json?: boolean;
}

const MAX_QUESTION_CHARS = 16_384;

export async function runInfer(checkpoint: string, question: string, opts: InferCliOptions): Promise<void> {
  const maxNewTokens = intOption('infer', 'max-new-tokens', opts.maxNewTokens, 4096);
  const q = question.trim();
  if (q === '') throw new Error('infer: the question is empty');
  if (q.length > MAX_QUESTION_CHARS)
    throw new Error(`infer: the question is longer than ${MAX_QUESTION_CHARS} characters`);
  // lazy: the native model and the verifier load only when this command runs
  const { loadGenerator } = await import('@spark/method/checkpoint');
  const { Verifier } = await import('@spark/verify');
  const gen = await loadGenerator(checkpoint, { maxNewTokens, batch: 1 }, opts.tokenizer);
  const verifier = opts.answer !== undefined ? new Verifier({}) : null;
  try {
    await verifier?.ready();
    const [r] = await evaluateProblems(
      [
        {
          id: 'infer',
          dataset: 'infer',
          question: q,
          ...(opts.answer !== undefined ? { answer: opts.answer } : {}),
        },
      ],
      {
        generate: gen.generate,
        ...(verifier ? { scorer: verifier } : {}),
        variant: variantOption(opts.variant),
        reflect: opts.reflect ?? false,
        batchSize: 1,
      },
    );
    if (!r) throw new Error('infer: no result');
    if (opts.json) {
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return;
    }
    if (gen.stats.tooLong > 0) process.stdout.write('(the prompt is longer than the model context)\n');
    const scored = (c: boolean | undefined): string =>
      c === undefined ? '' : c ? '  [correct]' : '  [wrong]';
    if (r.reflection) {
      for (const s of r.reflection.trace) {
        const what =
          s.kind === 'judge' ? `verdict: ${s.extracted ?? '(none)'}` : `answer: ${s.extracted ?? '(none)'}`;
        process.stdout.write(`--- ${s.kind} (round ${s.round}) ${what}${scored(s.correct)}\n${s.output}\n`);
      }
      process.stdout.write(
        `=== final answer: ${r.extracted ?? '(none)'}${scored(verifier ? r.correct : undefined)} ` +
          `(${r.reflection.calls} model calls, stopped by ${r.reflection.stop === 'yes' ? '"Yes"' : 'round limit'})\n`,
      );
    } else {
      process.stdout.write(
        `${r.output}\n=== answer: ${r.extracted ?? '(none)'}${scored(verifier ? r.correct : undefined)}\n`,
      );
    }
  } finally {
    await verifier?.close();
    gen.close();
  }
}

export function register(program: Command): void {
  program
    .command('infer')
    .description('Answer one question with a checkpoint (greedy); --reflect prints the self-reflection trace')
    .argument('<checkpoint>', 'checkpoint directory (config.json + model.safetensors)')
    .argument('<question>', 'the question (the answer-format instruction is appended)')
    .option('--reflect', 'test-time self-reflection: self-judge, re-solve unless "Yes", at most 2 rounds')
    .option('--answer <gold>', 'the ground truth, to score the answer(s)')
    .addOption(
      new Option('--variant <variant>', 'prompt wording').choices(['short', 'full']).default('short'),
    )
    .option('--max-new-tokens <n>', 'longest output in tokens', '96')
    .option(
      '--tokenizer <spec>',
      '"char" or a tokenizer folder (default: the checkpoint\'s tokenizer.json, else char)',
    )
    .option('--json', 'print the result (and trace) as JSON')
    .action(async (checkpoint: string, question: string, opts: InferCliOptions) => {
      await runInfer(checkpoint, question, opts);
    });
}
