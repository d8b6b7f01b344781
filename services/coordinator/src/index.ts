// @spark/coordinator: The coordinator: the researchers' JobService, job state in Redis, and the driver of every job's steps.
export {};
