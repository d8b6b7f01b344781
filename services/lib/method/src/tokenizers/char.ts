// The built-in character-level tokenizer of the embedded default: 128 ids, so the tiny demo model's
// embedding and output layers stay tiny. Id layout (documented in docs/tasks.md):
//   0 <|pad|>   1 <|bos|>   2 <|endoftext|> (eos; also ends every chat turn)
//   3 <|system|>   4 <|user|>   5 <|assistant|>   6 <|unk|> (replacement; decodes to U+FFFD)
//   9 '\t'   10 '\n'   32..126 printable ASCII (id = the character code)
//   7, 8, 11..31, 127 reserved (never produced; decode to nothing)
// Before lookup a few common Unicode characters fold to ASCII (× → *, ÷ → /, − – — → -, curly quotes →
// straight, no-break space → space) and '\r' is dropped; any other character becomes <|unk|>, never an error.
// Chat: `<|system|>…<|endoftext|><|user|>…<|endoftext|><|assistant|>` — the assistant's reply ends with
// <|endoftext|>, which is the stop id.
import {
  MAX_ENCODE_CHARS,
  TokenizerError,
  validateChat,
  type ChatMessage,
  type ChatOptions,
  type DecodeOptions,
  type EncodeOptions,
  type Tokenizer,
} from './types.js';

export const CHAR_VOCAB_SIZE = 128;
export const CHAR_PAD = 0;
export const CHAR_BOS = 1;
export const CHAR_EOS = 2;
export const CHAR_SYSTEM = 3;
export const CHAR_USER = 4;
export const CHAR_ASSISTANT = 5;
export const CHAR_UNK = 6;

/** Special tokens of the char tokenizer: text form → id. */
export const CHAR_SPECIALS: Readonly<Record<string, number>> = Object.freeze({
  '<|pad|>': CHAR_PAD,
  '<|bos|>': CHAR_BOS,
  '<|endoftext|>': CHAR_EOS,
  '<|system|>': CHAR_SYSTEM,
  '<|user|>': CHAR_USER,
  '<|assistant|>': CHAR_ASSISTANT,
  '<|unk|>': CHAR_UNK,
});

const ROLE_IDS: Readonly<Record<ChatMessage['role'], number>> = {
  system: CHAR_SYSTEM,
  user: CHAR_USER,
  assistant: CHAR_ASSISTANT,
};

/** Unicode characters folded to ASCII before lookup ('' = dropped). */
const FOLD: Readonly<Record<string, string>> = {
  '\r': '',
  '\u00d7': '*', // ×
  '\u00f7': '/', // ÷
  '\u2212': '-', // minus sign
  '\u2013': '-', // en dash
  '\u2014': '-', // em dash
  '\u2018': "'",
  '\u2019': "'",
  '\u201c': '"',
  '\u201d': '"',
  '\u00a0': ' ',
  '\u2009': ' ', // thin space
};

const SPECIAL_SPLIT = /(<\|(?:pad|bos|endoftext|system|user|assistant|unk)\|>)/;

function charId(code: number): number {
  if (code === 9 || code === 10 || (code >= 32 && code <= 126)) return code;
  return CHAR_UNK;
}

/** The character-level tokenizer (stateless; one shared instance is exported). */
export class CharTokenizer implements Tokenizer {
  readonly kind = 'char' as const;
  readonly vocabSize = CHAR_VOCAB_SIZE;
  readonly eosId = CHAR_EOS;
  readonly bosId = CHAR_BOS;
  readonly padId = CHAR_PAD;
  readonly specialIds = CHAR_SPECIALS;
  readonly stopIds: readonly number[] = Object.freeze([CHAR_EOS]);

  encode(text: string, opts: EncodeOptions = {}): number[] {
    if (typeof text !== 'string') throw new TokenizerError('encode() needs a string');
    if (text.length > MAX_ENCODE_CHARS) {
      throw new TokenizerError(
        `text of ${text.length} chars is over the encode limit of ${MAX_ENCODE_CHARS}`,
      );
    }
    const out: number[] = [];
    if (opts.allowSpecial) {
      for (const part of text.split(SPECIAL_SPLIT)) {
        const special = CHAR_SPECIALS[part];
        if (special !== undefined) out.push(special);
        else this.encodePlain(part, out);
      }
    } else this.encodePlain(text, out);
    return out;
  }

  private encodePlain(text: string, out: number[]): void {
    for (const ch of text) {
      // for..of walks code points, so an astral character (emoji) is one <|unk|>, not two
      const folded = FOLD[ch];
      if (folded !== undefined) {
        if (folded) out.push(folded.charCodeAt(0));
        continue;
      }
      out.push(ch.length === 1 ? charId(ch.charCodeAt(0)) : CHAR_UNK);
    }
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    let s = '';
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as number;
      if (!Number.isInteger(id) || id < 0 || id >= CHAR_VOCAB_SIZE) {
        throw new TokenizerError(`token id ${id} at position ${i} is outside [0, ${CHAR_VOCAB_SIZE})`);
      }
      if (id === 9 || id === 10 || (id >= 32 && id <= 126)) s += String.fromCharCode(id);
      else if (id === CHAR_UNK) s += opts.skipSpecial ? '' : '\ufffd';
      else if (id <= CHAR_UNK && !opts.skipSpecial) s += SPECIAL_TEXT[id] as string;
      // reserved ids decode to nothing
    }
    return s;
  }

  renderChat(messages: readonly ChatMessage[], opts: ChatOptions = {}): string {
    validateChat(messages);
    let s = '';
    for (const m of messages) s += `<|${m.role}|>${m.content}<|endoftext|>`;
    if (opts.addGenerationPrompt ?? true) s += '<|assistant|>';
    return s;
  }

  encodeChat(messages: readonly ChatMessage[], opts: ChatOptions = {}): number[] {
    validateChat(messages);
    const out: number[] = [];
    for (const m of messages) {
      out.push(ROLE_IDS[m.role]);
      this.encodePlain(m.content, out);
      out.push(CHAR_EOS);
    }
    if (opts.addGenerationPrompt ?? true) out.push(CHAR_ASSISTANT);
    return out;
  }
}

const SPECIAL_TEXT: readonly string[] = (() => {
  const t: string[] = [];
  for (const [text, id] of Object.entries(CHAR_SPECIALS)) t[id] = text;
  return t;
})();

/** The shared char tokenizer instance. */
export const charTokenizer: Tokenizer = new CharTokenizer();
