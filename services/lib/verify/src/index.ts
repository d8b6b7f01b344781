// @spark/verify: the answer checker behind the verifiable reward — extract a final answer, decide whether it
// equals its label (MATH-style normalisation, exact numbers, symbolic equivalence in a killable worker pool,
// bounded in time and size). The verifier service, `spark verify` and evaluation use it. docs/verifier.md.
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
} from './extract.js';
export { normalizeAnswer } from './normalize.js';
export { parseNumber, numbersEqual, DEFAULT_REL_TOL, type NumericValue } from './numeric.js';
export {
  compareAnswers,
  type CompareOptions,
  type CompareRule,
  type CompareVerdict,
  type SymbolicCheck,
  type SymbolicMode,
} from './compare.js';
export {
  SymbolicPool,
  DEFAULT_MAX_QUEUE_WAIT_MS,
  DEFAULT_SPARES,
  DEFAULT_MAX_RUN_WALL_FACTOR,
  DEFAULT_WALL_CAP_FACTOR,
  type PoolOptions,
  type PoolOutcome,
  type PoolTiming,
} from './pool.js';
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
} from './verifier.js';
