// @spark/reward-synthesis: Reward synthesis: recycles verified policy-phase groups into judge and reflection prompts; keeps the per-job FIFO buffer.
export {};
