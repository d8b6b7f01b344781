// Hugging Face tokenizers: a `tokenizer.json` (BPE and the other models tokenizers.js supports) plus its
// `tokenizer_config.json`, run fully offline by `@huggingface/tokenizers` (pure JS, no downloads), with
// chat templates (Jinja, from `chat_template`) rendered by `@huggingface/jinja`. Files are size-bounded and
// validated before use; every failure is a TokenizerError naming the file and the problem.
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Template } from '@huggingface/jinja';
import { Tokenizer as HfCoreUntyped } from '@huggingface/tokenizers';
import {
  TokenizerError,
  validateChat,
  type ChatMessage,
  type ChatOptions,
  type DecodeOptions,
  type Tokenizer,
} from './types.js';

/** Largest tokenizer file read (a 150k-token BPE tokenizer.json is ~10 MiB). */
export const MAX_TOKENIZER_FILE_BYTES = 64 << 20;
/**
 * Largest token id accepted (the native model's vocabulary bound, 2^20). tokenizers.js builds dense tables
 * up to the largest id, so one id of 10^9 in a hostile tokenizer.json would cost minutes and gigabytes.
 */
export const MAX_TOKEN_ID = (1 << 20) - 1;
/** Longest chat template accepted. */
const MAX_TEMPLATE_CHARS = 1 << 20;
/**
 * Longest text `encode` accepts for a Hugging Face tokenizer: BPE in JS costs ~15 µs per character on a
 * pathological single word, so 1M characters bounds one call to seconds. Real prompts are far shorter.
 */
export const MAX_HF_ENCODE_CHARS = 1_000_000;
/** Longest rendered chat accepted. */
const MAX_RENDERED_CHARS = MAX_HF_ENCODE_CHARS;
/** End-of-turn tokens added to the stop ids when the vocabulary has them. */
const END_OF_TURN_TOKENS = ['<|im_end|>', '<|eot_id|>', '<|end|>', '<end_of_turn>'];

/**
 * The part of tokenizers.js's Tokenizer class Spark uses. Declared here because the package's bundled
 * declaration files use extensionless relative imports that NodeNext resolution cannot follow.
 */
interface HfCoreApi {
  encode(text: string, options?: { add_special_tokens?: boolean }): { ids: number[] };
  decode(
    ids: number[],
    options?: { skip_special_tokens?: boolean; clean_up_tokenization_spaces?: boolean },
  ): string;
  token_to_id(token: string): number | undefined;
  get_vocab(withAddedTokens?: boolean): Map<string, number>;
  get_added_tokens_decoder(): Map<number, { content: string; special: boolean }>;
}
const HfCore = HfCoreUntyped as unknown as new (tokenizerJson: object, config: object) => HfCoreApi;

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** A special-token field of tokenizer_config.json: a string, `{content}`, or null. */
function tokenText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (isObj(v) && typeof v.content === 'string') return v.content;
  return null;
}

/** The `chat_template` of a config: a string, or the `default` entry of a named list. */
function chatTemplateOf(config: Obj): string | null {
  const t = config.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const entries = t.filter(isObj);
    const pick = entries.find((e) => e.name === 'default') ?? entries[0];
    return pick && typeof pick.template === 'string' ? pick.template : null;
  }
  return null;
}

/** The first token id of `model.vocab` or `added_tokens` that is not an integer in [0, MAX_TOKEN_ID]. */
function tokenIdProblem(json: Obj): string | null {
  const check = (where: string, id: unknown): string | null =>
    typeof id === 'number' && Number.isInteger(id) && id >= 0 && id <= MAX_TOKEN_ID
      ? null
      : `${where}: token id ${String(id).slice(0, 40)} is not an integer in [0, ${MAX_TOKEN_ID}]`;
  const vocab = (json.model as Obj).vocab;
  if (isObj(vocab))
    for (const [token, id] of Object.entries(vocab)) {
      const p = check(`model.vocab[${JSON.stringify(token.slice(0, 40))}]`, id);
      if (p) return p;
    }
  if (Array.isArray(json.added_tokens))
    for (const [i, t] of json.added_tokens.entries()) {
      const p = check(`added_tokens[${i}].id`, isObj(t) ? t.id : undefined);
      if (p) return p;
    }
  return null;
}

/** A Hugging Face tokenizer behind Spark's Tokenizer interface. */
export class HfTokenizer implements Tokenizer {
  readonly kind = 'hf' as const;
  readonly vocabSize: number;
  readonly eosId: number;
  readonly bosId: number | null;
  readonly padId: number;
  readonly specialIds: Readonly<Record<string, number>>;
  readonly stopIds: readonly number[];
  private readonly core: HfCoreApi;
  private readonly template: Template | null;
  private readonly tokens: { bos: string | null; eos: string; pad: string | null; unk: string | null };

  /**
   * Builds from parsed JSON. `name` labels errors (e.g. the folder). Throws TokenizerError when the files
   * are not a usable tokenizer, the eos token is not in the vocabulary, or the chat template does not parse.
   */
  constructor(tokenizerJson: unknown, tokenizerConfig: unknown, name = 'tokenizer') {
    if (!isObj(tokenizerJson) || !isObj(tokenizerJson.model)) {
      throw new TokenizerError(`${name}: tokenizer.json must be an object with a "model" object`);
    }
    const model = tokenizerJson.model;
    if (model.type === 'BPE' && (!isObj(model.vocab) || !Array.isArray(model.merges))) {
      throw new TokenizerError(`${name}: a BPE model needs "vocab" (object) and "merges" (list)`);
    }
    const badId = tokenIdProblem(tokenizerJson);
    if (badId) throw new TokenizerError(`${name}: ${badId}`);
    const config: Obj = isObj(tokenizerConfig) ? tokenizerConfig : {};
    try {
      this.core = new HfCore(tokenizerJson, config);
    } catch (e) {
      throw new TokenizerError(`${name}: tokenizers.js cannot load this tokenizer: ${String(e)}`, [], {
        cause: e,
      });
    }
    const vocab = this.core.get_vocab(true);
    let maxId = -1;
    for (const id of vocab.values()) if (id > maxId) maxId = id;
    this.vocabSize = maxId + 1;

    const special: Record<string, number> = {};
    for (const [id, tok] of this.core.get_added_tokens_decoder()) if (tok.special) special[tok.content] = id;
    this.specialIds = Object.freeze(special);

    const idOf = (field: string): { text: string; id: number } | null => {
      const text = tokenText(config[field]);
      if (text === null) return null;
      const id = this.core.token_to_id(text);
      if (id === undefined) throw new TokenizerError(`${name}: ${field} "${text}" is not in the vocabulary`);
      return { text, id };
    };
    const eos = idOf('eos_token');
    if (!eos) throw new TokenizerError(`${name}: tokenizer_config.json has no eos_token`);
    const bos = idOf('bos_token');
    const pad = idOf('pad_token');
    const unk = tokenText(config.unk_token);
    this.eosId = eos.id;
    this.bosId = bos?.id ?? null;
    this.padId = pad?.id ?? eos.id;
    this.tokens = { bos: bos?.text ?? null, eos: eos.text, pad: pad?.text ?? null, unk };
    const stops = new Set([eos.id]);
    for (const t of END_OF_TURN_TOKENS) {
      const id = special[t];
      if (id !== undefined) stops.add(id);
    }
    this.stopIds = Object.freeze([...stops]);

    const source = chatTemplateOf(config);
    if (source !== null && source.length > MAX_TEMPLATE_CHARS) {
      throw new TokenizerError(`${name}: chat_template is longer than ${MAX_TEMPLATE_CHARS} chars`);
    }
    try {
      this.template = source === null ? null : new Template(source);
    } catch (e) {
      throw new TokenizerError(`${name}: chat_template does not parse: ${String(e)}`, [], { cause: e });
    }
  }

  /** Loads `tokenizer.json` and `tokenizer_config.json` from a folder (the config is optional). */
  static async fromDirectory(dir: string): Promise<HfTokenizer> {
    const json = await readJsonFile(join(dir, 'tokenizer.json'), true);
    const config = await readJsonFile(join(dir, 'tokenizer_config.json'), false);
    return new HfTokenizer(json, config ?? {}, dir);
  }

  /** True when the config carries a chat template. */
  get hasChatTemplate(): boolean {
    return this.template !== null;
  }

  encode(text: string): number[] {
    if (typeof text !== 'string') throw new TokenizerError('encode() needs a string');
    if (text.length > MAX_HF_ENCODE_CHARS) {
      throw new TokenizerError(
        `text of ${text.length} chars is over the encode limit of ${MAX_HF_ENCODE_CHARS}`,
      );
    }
    return this.core.encode(text, { add_special_tokens: false }).ids;
  }

  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i] as number;
      if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
        throw new TokenizerError(`token id ${id} at position ${i} is outside [0, ${this.vocabSize})`);
      }
    }
    if (ids.length === 0) return ''; // tokenizers.js rejects an empty list
    return this.core.decode([...ids], {
      skip_special_tokens: opts.skipSpecial ?? false,
      clean_up_tokenization_spaces: false,
    });
  }

  renderChat(messages: readonly ChatMessage[], opts: ChatOptions = {}): string {
    validateChat(messages);
    if (!this.template) {
      throw new TokenizerError('this tokenizer has no chat_template in tokenizer_config.json');
    }
    let out: string;
    try {
      out = this.template.render({
        messages: messages.map((m) => ({ role: m.role, content: m.content })),
        add_generation_prompt: opts.addGenerationPrompt ?? true,
        bos_token: this.tokens.bos ?? '',
        eos_token: this.tokens.eos,
        pad_token: this.tokens.pad ?? '',
        unk_token: this.tokens.unk ?? '',
      });
    } catch (e) {
      throw new TokenizerError(`chat template failed: ${e instanceof Error ? e.message : String(e)}`, [], {
        cause: e,
      });
    }
    if (out.length > MAX_RENDERED_CHARS) throw new TokenizerError('rendered chat is over the size limit');
    return out;
  }

  encodeChat(messages: readonly ChatMessage[], opts: ChatOptions = {}): number[] {
    return this.encode(this.renderChat(messages, opts));
  }
}

async function readJsonFile(path: string, required: boolean): Promise<unknown> {
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch (e) {
    if (!required && (e as { code?: unknown }).code === 'ENOENT') return null;
    throw new TokenizerError(`cannot read ${path}: ${(e as { code?: string }).code ?? String(e)}`, [], {
      cause: e,
    });
  }
  if (size > MAX_TOKENIZER_FILE_BYTES) {
    throw new TokenizerError(`${path} has ${size} bytes, over the limit of ${MAX_TOKENIZER_FILE_BYTES}`);
  }
  const text = await readFile(path, 'utf8');
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new TokenizerError(`${path} is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}
