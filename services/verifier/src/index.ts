// @spark/verifier: verifiable rewards. The library turns a model response and a gold label into a 0/1
// reward with a reason (see docs/verifier.md); the verifier service (a later issue) wraps it.
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
