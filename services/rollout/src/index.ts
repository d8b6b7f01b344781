// @spark/rollout: Rollout workers: sample G responses per prompt with the native sampler at the job's policy version.
export {};
