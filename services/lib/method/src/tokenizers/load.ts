// One entry point from a config string to a Tokenizer: `char` (the built-in 128-id tokenizer of the
// embedded default) or a folder holding a Hugging Face tokenizer.json (+ tokenizer_config.json).
import { charTokenizer } from './char.js';
import { HfTokenizer } from './hf.js';
import { TokenizerError, type Tokenizer } from './types.js';

/** The spec naming the built-in char tokenizer. */
export const CHAR_TOKENIZER_SPEC = 'char';

/** Resolves `char` or a tokenizer folder path; throws TokenizerError for an empty spec or bad files. */
export async function loadTokenizer(spec: string): Promise<Tokenizer> {
  if (typeof spec !== 'string' || spec.trim() === '') {
    throw new TokenizerError('tokenizer spec must be "char" or a folder with tokenizer.json');
  }
  if (spec === CHAR_TOKENIZER_SPEC) return charTokenizer;
  return HfTokenizer.fromDirectory(spec);
}
