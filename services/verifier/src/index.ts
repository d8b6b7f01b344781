// @spark/verifier: verifiable rewards. The library turns a model response and a gold label into a 0/1
// reward with a reason (see docs/verifier.md); the verifier service (a later issue) wraps it.
export {
  extractAnswer,
  extractAnswerIs,
  extractBoxed,
  extractGsm8k,
  extractLastMath,
  extractLastNumber,
  extractUnboxed,
  DEFAULT_MAX_ANSWER_CHARS,
  type BoxChoice,
  type ExtractOptions,
  type ExtractRule,
  type Extraction,
} from './lib/extract.js';
export { normalizeAnswer } from './lib/normalize.js';
export { parseNumber, numbersEqual, DEFAULT_REL_TOL, type NumericValue } from './lib/numeric.js';
export {
  compareAnswers,
  type CompareOptions,
  type CompareRule,
  type CompareVerdict,
  type SymbolicCheck,
  type SymbolicMode,
} from './lib/compare.js';
export { SymbolicPool, DEFAULT_MAX_QUEUE_WAIT_MS, type PoolOptions, type PoolOutcome } from './lib/pool.js';
export {
  Verifier,
  DEFAULT_BUDGET_MS,
  DEFAULT_MAX_LABEL_CHARS,
  DEFAULT_MAX_RESPONSE_CHARS,
  DEFAULT_MAX_SYMBOLIC_CHARS,
  DEFAULT_MAX_SYMBOLIC_DEPTH,
  type ItemOptions,
  type VerifierOptions,
  type VerifyResult,
  type VerifyStatus,
} from './lib/verifier.js';
export {
  startVerifierService,
  verifierServiceConfig,
  verifierConfigShape,
  parseVerifyTask,
  scoreTask,
  modeOf,
  VERIFIER_SERVICE_NAME,
  type VerifierService,
  type VerifierServiceConfig,
  type VerifierServiceDeps,
  type VerifyTaskResult,
} from './service/index.js';
