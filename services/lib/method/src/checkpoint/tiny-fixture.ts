// A tiny checkpoint for tests and the benchmark: the `tiny` preset, briefly fine-tuned (SFT) on worked
// solutions of the synthetic train split so that its greedy outputs have the `\boxed{}` answer format
// (answers are mostly wrong at this size; evaluation only needs realistic outputs). Deterministic for a
// seed and a step count. Written with Model.save, the layout the learner's checkpoints use.
import { DEMO_TASK_MIX, generateTasks, warmupExample } from '../tasks/index.js';
import { charTokenizer, renderPromptTokens } from '../tokenizers/index.js';
import { DEFAULT_ADAMW, Model } from '@spark/kernels';

/** Creates, fine-tunes for `steps` SFT steps of 16 examples, and saves a tiny checkpoint to `dir`. */
export async function makeTinyCheckpoint(dir: string, steps = 80, seed = 1): Promise<void> {
  const model = await Model.create('tiny', seed);
  try {
    const examples = generateTasks({ seed, split: 'train', count: 512, ...DEMO_TASK_MIX }).map((p) =>
      warmupExample(p),
    );
    for (let step = 0; step < steps; step++) {
      const batch = [];
      for (let i = 0; i < 16; i++) {
        const e = examples[(step * 16 + i) % examples.length];
        if (!e) continue;
        const prompt = renderPromptTokens(charTokenizer, e.prompt);
        const completion = [...charTokenizer.encode(e.completion), charTokenizer.eosId];
        batch.push({ tokens: Uint32Array.from([...prompt, ...completion]), promptLen: prompt.length });
      }
      await model.trainStep([batch], { kind: 'sft' }, { ...DEFAULT_ADAMW, lr: 3e-3 });
    }
    await model.save(dir);
  } finally {
    model.free();
  }
}
