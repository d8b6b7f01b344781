// @spark/method/tokenizers: the Tokenizer interface, the built-in 128-id character tokenizer of the
// embedded default, and Hugging Face tokenizer.json + tokenizer_config.json (BPE, Jinja chat templates).
export * from './types.js';
export * from './char.js';
export * from './hf.js';
export * from './load.js';
export { renderPromptTokens } from './chat-prompt.js';
