// Prompt → token rendering shared by the rollout workers (which sample from these tokens) and the learner
// (which recomputes log-probs over exactly the same prefix): one user turn in the tokenizer's chat format,
// followed by the assistant start, so the model's reply is what gets sampled and trained.
import { MAX_ENCODE_CHARS, TokenizerError, type Tokenizer } from './index.js';

/** Token ids of `text` as a single user turn plus the generation prompt (char tokenizer: <|user|>…<|endoftext|><|assistant|>). */
export function renderPromptTokens(tokenizer: Tokenizer, text: string): number[] {
  if (typeof text !== 'string') throw new TokenizerError('prompt text must be a string');
  if (text.length > MAX_ENCODE_CHARS) {
    throw new TokenizerError(
      `prompt of ${text.length} chars is over the encode limit of ${MAX_ENCODE_CHARS}`,
    );
  }
  return tokenizer.encodeChat([{ role: 'user', content: text }], { addGenerationPrompt: true });
}
