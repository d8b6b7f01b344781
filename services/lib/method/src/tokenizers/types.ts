// The Tokenizer interface every Spark component codes against (sampler, learner data path, evaluator), and
// its error class. Two implementations: the built-in character-level tokenizer of the embedded default
// (./char.ts) and Hugging Face `tokenizer.json` files (./hf.ts).
import { InvalidArgumentError } from '@spark/runtime/errors';

/** One chat message. */
export interface ChatMessage {
  readonly role: 'system' | 'user' | 'assistant';
  readonly content: string;
}

export interface EncodeOptions {
  /**
   * Char tokenizer: parse special-token strings such as `<|user|>` in the text (default false: they are
   * encoded as plain characters, so user text cannot forge a role). Hugging Face tokenizers always parse
   * their added tokens, as `transformers` does.
   */
  readonly allowSpecial?: boolean;
}

export interface DecodeOptions {
  /** Drop special tokens from the text (default false). */
  readonly skipSpecial?: boolean;
}

export interface ChatOptions {
  /** End with the opening of an assistant turn, so the model continues as the assistant (default true). */
  readonly addGenerationPrompt?: boolean;
}

/** A tokenizer with chat rendering. Ids are integers in [0, vocabSize). */
export interface Tokenizer {
  /** `char` (built-in) or `hf` (a Hugging Face tokenizer.json). */
  readonly kind: 'char' | 'hf';
  readonly vocabSize: number;
  /** End of text; also ends every chat turn of the char tokenizer. */
  readonly eosId: number;
  /** Beginning of text, when the tokenizer has one. */
  readonly bosId: number | null;
  readonly padId: number;
  /** Every special token's text and id. */
  readonly specialIds: Readonly<Record<string, number>>;
  /** Ids at which generation stops (eos, plus an end-of-turn token where the tokenizer has one). */
  readonly stopIds: readonly number[];
  encode(text: string, opts?: EncodeOptions): number[];
  decode(ids: readonly number[], opts?: DecodeOptions): string;
  /** The chat as the model sees it, as text (special tokens written out). */
  renderChat(messages: readonly ChatMessage[], opts?: ChatOptions): string;
  /** The chat as token ids (message contents never turn into special tokens for the char tokenizer). */
  encodeChat(messages: readonly ChatMessage[], opts?: ChatOptions): number[];
}

/** Thrown for unusable tokenizer files, bad ids, or inputs over the size bounds. */
export class TokenizerError extends InvalidArgumentError {}

/** Longest text `encode` accepts, in UTF-16 code units (bounds time and memory). */
export const MAX_ENCODE_CHARS = 4_000_000;

/** Checks the shape of a chat; throws TokenizerError listing every bad message. */
export function validateChat(messages: readonly ChatMessage[]): void {
  const problems: string[] = [];
  if (!Array.isArray(messages)) problems.push('messages must be an array');
  else
    messages.forEach((m: ChatMessage, i: number) => {
      if (m === null || typeof m !== 'object') problems.push(`messages[${i}] must be an object`);
      else {
        if (m.role !== 'system' && m.role !== 'user' && m.role !== 'assistant') {
          problems.push(`messages[${i}].role must be system, user or assistant`);
        }
        if (typeof m.content !== 'string') problems.push(`messages[${i}].content must be a string`);
      }
    });
  if (problems.length) throw new TokenizerError('invalid chat', problems);
}
