// @spark/learner: The learner: recomputes log-probs, computes group advantages, runs GRPO/SFT updates natively, serves policy weights and writes checkpoints.
export {};
