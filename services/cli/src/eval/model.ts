// The checkpoint loading and greedy generator of evaluation live in @spark/rollout/checkpoint, because the
// rollout workers use them too (JobService.Generate, `spark eval --address`); re-exported here.
export * from '@spark/rollout/checkpoint';
