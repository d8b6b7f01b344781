// The checked contract: for every payload schema, a realistic value survives JSON and the parse function
// unchanged, a missing or wrongly typed field is refused with its path in the InvalidArgumentError's
// message, and the bounds hold (the limit itself passes, one past it is refused).
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { InvalidArgumentError } from '@spark/runtime';

import {
  CHECKPOINT_FILES,
  parseLatestPointer,
  parseTrainerState,
  stepDirName,
  stepOfDirName,
} from './checkpoint-layout.js';
import { GENERATE_LIMITS } from './keys.js';
import { describeIssues, parseJson } from './parse.js';
import {
  PAYLOAD_LIMITS as P,
  parseDriverCursor,
  parseGenerateTask,
  parseGenerateTaskResult,
  parseLearnHyper,
  parseLearnResult,
  parseLearnTask,
  parsePolicyConfig,
  parsePolicyHash,
  parsePromptItem,
  parseRolloutTask,
  parseSampledGroup,
  parseSampledResponse,
  parseSamplingParams,
  parseSynthesisResult,
  parseSynthesisTask,
  parseVerifiedGroup,
  parseVerifiedResponse,
  parseVerifyTask,
} from './types.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const prompt = {
  promptId: 'p-gsm-17',
  kind: 'problem',
  text: 'Natalia sold clips to 48 of her friends… How many clips did she sell? Put the answer in \\boxed{}.',
  label: '72',
  sourceGroupId: null,
  question: 'Natalia sold clips to 48 of her friends… How many clips did she sell?',
  tags: ['gsm8k'],
};
const judgePrompt = {
  promptId: 'j-3-p-gsm-17',
  kind: 'pointwise',
  text: 'Is this answer correct? … Answer \\boxed{Yes} or \\boxed{No}.',
  label: 'Yes',
  sourceGroupId: '3/policy/p-gsm-17',
  question: null,
  tags: ['pointwise-yesno', 'mixed'],
};
const sampling = { temperature: 1, topP: 1, maxNewTokens: 64, seed: 7 };
const response = {
  text: 'so \\boxed{72}',
  tokens: [12, 40, 7, 2],
  logprobs: [-0.5, -1.25, -0.03, -0.1],
  finish: 'stop',
};
const verifiedResponse = { ...response, reward: 1, extracted: '72', reason: 'math: equal' };
const sampledGroup = {
  groupId: '3/policy/p-gsm-17',
  prompt,
  promptTokens: [1, 5, 9, 11],
  policyVersion: 4,
  responses: [response, { ...response, finish: 'length' }],
};
const verifiedGroup = {
  ...sampledGroup,
  responses: [verifiedResponse, { ...verifiedResponse, reward: 0, extracted: null, reason: 'no box' }],
};
const hyper = {
  learningRate: 5e-7,
  clipEpsilon: 0.2,
  klCoefficient: 0.001,
  miniBatchSize: 64,
  microBatchSize: 8,
  maxGradNorm: 1,
  beta1: 0.9,
  beta2: 0.95,
  weightDecay: 0,
};

interface Case {
  readonly parse: (data: unknown) => unknown;
  readonly value: Json;
  /** A required field (dotted path) to delete. */
  readonly required: string;
  /** A field set to a value of the wrong type. */
  readonly wrongType: readonly [string, Json];
  /** Values at and one past a bound: [path, accepted, refused]. */
  readonly bounds: readonly (readonly [string, Json, Json])[];
}

const CASES: Record<string, Case> = {
  PromptItem: {
    parse: parsePromptItem,
    value: prompt,
    required: 'label',
    wrongType: ['tags', 'gsm8k'],
    bounds: [
      ['text', 'x'.repeat(P.maxPromptChars), 'x'.repeat(P.maxPromptChars + 1)],
      ['promptId', 'p', ''],
      [
        'tags',
        Array.from({ length: P.maxTags }, () => 't'),
        Array.from({ length: P.maxTags + 1 }, () => 't'),
      ],
      ['kind', 'reflection', 'essay'],
    ],
  },
  SamplingParams: {
    parse: parseSamplingParams,
    value: sampling,
    required: 'seed',
    wrongType: ['temperature', '1'],
    bounds: [
      ['topP', 1, 0],
      ['maxNewTokens', 1, 0],
      ['seed', Number.MAX_SAFE_INTEGER, -1],
    ],
  },
  RolloutTask: {
    parse: parseRolloutTask,
    value: {
      jobId: 'job-7',
      step: 3,
      phase: 'policy',
      shardId: '3/policy/0',
      policyVersion: 4,
      groupSize: 8,
      sampling,
      prompts: [prompt, judgePrompt],
    },
    required: 'sampling.topP',
    wrongType: ['prompts.1.sourceGroupId', 5],
    bounds: [
      ['groupSize', P.maxGroupSize, P.maxGroupSize + 1],
      ['prompts', [prompt], []],
      ['jobId', 'a', 'Job_7'],
      ['step', 0, 1.5],
      ['policyVersion', P.maxPolicyVersion, P.maxPolicyVersion + 1],
    ],
  },
  SampledResponse: {
    parse: parseSampledResponse,
    value: response,
    required: 'finish',
    wrongType: ['tokens.1', 'x'],
    bounds: [
      ['tokens.0', 0, -1],
      ['text', 'x'.repeat(P.maxTextChars), 'x'.repeat(P.maxTextChars + 1)],
    ],
  },
  SampledGroup: {
    parse: parseSampledGroup,
    value: sampledGroup,
    required: 'prompt.kind',
    wrongType: ['promptTokens', 'abc'],
    bounds: [
      ['groupId', 'g', ''],
      [
        'responses',
        Array.from({ length: P.maxResponsesPerGroup }, () => response),
        Array.from({ length: P.maxResponsesPerGroup + 1 }, () => response),
      ],
    ],
  },
  VerifyTask: {
    parse: parseVerifyTask,
    value: { jobId: 'job-7', step: 3, phase: 'policy', shardId: '3/policy/0', groups: [sampledGroup] },
    required: 'groups.0.responses.1.logprobs',
    wrongType: ['groups.0.policyVersion', '4'],
    bounds: [
      ['shardId', 's'.repeat(P.maxShardIdChars), 's'.repeat(P.maxShardIdChars + 1)],
      ['phase', 'eval', 'nap'],
    ],
  },
  VerifiedResponse: {
    parse: parseVerifiedResponse,
    value: verifiedResponse,
    required: 'reason',
    wrongType: ['extracted', 72],
    bounds: [['reward', 0, 0.5]],
  },
  VerifiedGroup: {
    parse: parseVerifiedGroup,
    value: verifiedGroup,
    required: 'responses.1.reward',
    wrongType: ['prompt.question', false],
    bounds: [['promptTokens', [0], [-3]]],
  },
  LearnHyper: {
    parse: parseLearnHyper,
    value: hyper,
    required: 'beta2',
    wrongType: ['miniBatchSize', '64'],
    bounds: [
      ['clipEpsilon', 0.999, 1],
      ['beta1', 0, 1],
      ['microBatchSize', 1, 0],
      ['learningRate', 0, -1e-9],
    ],
  },
  LearnTask: {
    parse: parseLearnTask,
    value: {
      jobId: 'job-7',
      step: 3,
      phase: 'policy',
      policyVersion: 4,
      groupIds: ['3/policy/p-gsm-17', '3/policy/p-gsm-18'],
      hyper,
      sft: [],
      totalOptimizerSteps: 120,
      final: true,
    },
    required: 'hyper.learningRate',
    wrongType: ['sft', [{ prompt: 'q', target: 7 }]],
    bounds: [
      ['phase', 'checkpoint', 'eval'],
      ['totalOptimizerSteps', 0, -1],
      [
        'groupIds',
        Array.from({ length: P.maxGroupsPerStep }, () => 'g'),
        Array.from({ length: P.maxGroupsPerStep + 1 }, () => 'g'),
      ],
    ],
  },
  LearnResult: {
    parse: parseLearnResult,
    value: {
      policyVersion: 5,
      optimizerSteps: 2,
      sequences: 128,
      tokens: 9000,
      loss: 0.25,
      kl: 0.001,
      clipFraction: 0.05,
      gradNorm: 0.8,
      staleGroups: 0,
      seconds: { logprobs: 0.5, train: 3.25, publish: 0.125 },
      learningRate: 5e-7,
      checkpointPath: '/data/jobs/job-7/step-3',
      skippedSequences: 1,
    },
    required: 'seconds.train',
    wrongType: ['checkpointPath', 3],
    bounds: [
      ['staleGroups', 0, -1],
      ['checkpointPath', '/', ''],
    ],
  },
  SynthesisTask: {
    parse: parseSynthesisTask,
    value: {
      jobId: 'job-7',
      step: 3,
      epoch: 0,
      batchSize: 64,
      seed: 7,
      judge: true,
      reflection: true,
      groupIds: ['3/policy/p-gsm-17'],
      pointwise: true,
      pairwise: false,
      balanceLabels: true,
      templateVariant: 'short',
      maxCotChars: 2000,
    },
    required: 'reflection',
    wrongType: ['judge', 'yes'],
    bounds: [
      ['batchSize', 1, 0],
      ['templateVariant', 'full', 'long'],
      ['maxCotChars', 1_000_000, 1_000_001],
    ],
  },
  SynthesisResult: {
    parse: parseSynthesisResult,
    value: {
      judgeItems: 3,
      reflectionItems: 2,
      bufferLength: 11,
      released: [judgePrompt],
      dropped: 0,
      epochCleared: false,
    },
    required: 'bufferLength',
    wrongType: ['released.0.kind', 1],
    bounds: [['judgeItems', 0, -1]],
  },
  GenerateTask: {
    parse: parseGenerateTask,
    value: { checkpoint: '/data/jobs/job-7', prompts: ['1+1=?', '2+2=?'], maxNewTokens: 96, tokenizer: '' },
    required: 'tokenizer',
    wrongType: ['prompts', '1+1=?'],
    bounds: [
      ['maxNewTokens', GENERATE_LIMITS.maxNewTokens, GENERATE_LIMITS.maxNewTokens + 1],
      ['prompts', ['q'], []],
      ['checkpoint', '/', ''],
      [
        'prompts',
        Array.from({ length: GENERATE_LIMITS.maxPrompts }, () => 'q'),
        Array.from({ length: GENERATE_LIMITS.maxPrompts + 1 }, () => 'q'),
      ],
      [
        'prompts',
        Array.from({ length: 32 }, () => 'x'.repeat(GENERATE_LIMITS.maxTotalChars / 32)),
        Array.from({ length: 33 }, () => 'x'.repeat(GENERATE_LIMITS.maxTotalChars / 32)),
      ],
    ],
  },
  GenerateTaskResult: {
    parse: parseGenerateTaskResult,
    value: {
      outputs: ['\\boxed{2}', ''],
      tooLong: 1,
      outputTokens: 17,
      worker: 'host:42',
      checkpointDir: '/d/step-3',
    },
    required: 'worker',
    wrongType: ['outputs', [1]],
    bounds: [['tooLong', 0, -1]],
  },
  DriverCursor: {
    parse: parseDriverCursor,
    value: { warmup: 2, evaluated: -1, step: 3, version: 7 },
    required: 'version',
    wrongType: ['step', '3'],
    bounds: [['evaluated', -1, -2]],
  },
  LatestPointer: {
    parse: parseLatestPointer,
    value: { dir: 'step-3', step: 3 },
    required: 'step',
    wrongType: ['dir', 3],
    bounds: [['dir', 'warmup', '../etc']],
  },
  TrainerState: {
    parse: parseTrainerState,
    value: {
      jobId: 'job-7',
      step: 3,
      phase: 'policy',
      policyVersion: 5,
      optimizerSteps: 40,
      rlOptimizerSteps: 8,
      totalOptimizerSteps: null,
      schedule: { kind: 'cosine', warmupRatio: 0.1, minLrRatio: 0 },
      learningRate: null,
      savedAt: '2026-12-06T20:00:00.000Z',
    },
    required: 'schedule.kind',
    wrongType: ['optimizerSteps', '40'],
    bounds: [['rlOptimizerSteps', 0, -1]],
  },
};

function clone(v: Json): Json {
  return JSON.parse(JSON.stringify(v)) as Json;
}

/** A copy of `value` with the field at dotted `path` set to `to` (or deleted when `to` is undefined). */
function withField(value: Json, path: string, to: Json | undefined): Json {
  const out = clone(value);
  const keys = path.split('.');
  let at = out as Record<string, Json>;
  for (const k of keys.slice(0, -1)) at = at[k] as Record<string, Json>;
  const last = keys[keys.length - 1] as string;
  if (to === undefined) delete at[last];
  else at[last] = to;
  return out;
}

function refused(c: Case, data: unknown, path: string): void {
  assert.throws(
    () => c.parse(data),
    (err: unknown) => {
      assert.ok(err instanceof InvalidArgumentError, `an InvalidArgumentError, got ${String(err)}`);
      assert.ok(
        err.problems.some((p) => p.startsWith(`${path}: `) || p.startsWith(`${path}.`)),
        `the problems name ${path}: ${err.problems.join(' | ')}`,
      );
      assert.ok(
        err.message.includes(`: ${path}`) || err.message.includes(`; ${path}`),
        'the message lists it',
      );
      return true;
    },
  );
}

describe('contract schemas', () => {
  for (const [name, c] of Object.entries(CASES)) {
    describe(name, () => {
      it('round-trips a realistic value through JSON', () => {
        assert.deepEqual(c.parse(JSON.parse(JSON.stringify(c.value))), c.value);
      });
      it('refuses a missing field with its path', () =>
        refused(c, withField(c.value, c.required, undefined), c.required));
      it('refuses a wrongly typed field with its path', () => {
        const [path, bad] = c.wrongType;
        refused(c, withField(c.value, path, bad), path);
      });
      it('enforces its bounds', () => {
        for (const [path, ok, bad] of c.bounds) {
          assert.doesNotThrow(() => c.parse(withField(c.value, path, ok)), `${path} = limit passes`);
          refused(c, withField(c.value, path, bad), path);
        }
      });
      it('refuses a non-object with (root)', () => refused(c, 'nope', '(root)'));
    });
  }

  it('lists every bad field at once, bounded', () => {
    const task = withField(withField(CASES.RolloutTask!.value, 'groupSize', 0), 'sampling.topP', 2);
    assert.throws(
      () => parseRolloutTask(task),
      (err: InvalidArgumentError) =>
        /^invalid RolloutTask: /.test(err.message) &&
        err.problems.length === 2 &&
        err.message.includes('groupSize: ') &&
        err.message.includes('sampling.topP: '),
    );
    const many = withField(
      CASES.RolloutTask!.value,
      'prompts',
      Array.from({ length: 150 }, () => ({ ...prompt, kind: 'essay' })),
    );
    assert.throws(
      () => parseRolloutTask(many),
      (err: InvalidArgumentError) =>
        err.problems.length === 101 &&
        err.problems[100] === '… and 50 more' &&
        err.message.includes('prompts.0.kind'),
    );
  });

  it('reads a NaN statistic back from the null JSON writes for it', () => {
    const r = parseLearnResult(
      JSON.parse(JSON.stringify({ ...(CASES.LearnResult!.value as object), loss: Number.NaN })),
    );
    assert.ok(Number.isNaN(r.loss));
  });

  it('a SynthesisTask refuses unknown fields; other payloads drop them', () => {
    refused(CASES.SynthesisTask!, { ...(CASES.SynthesisTask!.value as object), extra: 1 }, '(root)');
    const t = parseRolloutTask({ ...(CASES.RolloutTask!.value as object), extra: 1 });
    assert.equal('extra' in t, false);
  });

  it('a GenerateTaskResult may be a request error instead', () => {
    const e = { error: { code: 'not-found', message: 'cannot load checkpoint /x' } };
    assert.deepEqual(parseGenerateTaskResult(e), e);
    assert.throws(
      () => parseGenerateTaskResult({ error: { code: 'teapot', message: '' } }),
      /invalid GenerateTaskResult: error\.code: /,
    );
  });

  it('parses the policy hash as HGETALL returns it; {} is no hash', () => {
    const sha = 'ab'.repeat(32);
    assert.deepEqual(
      parsePolicyHash({ version: '4', learnerAddress: '10.0.0.2:50052', bytes: '4096', sha256: sha }),
      {
        version: 4,
        learnerAddress: '10.0.0.2:50052',
        bytes: 4096,
        sha256: sha,
      },
    );
    assert.equal(parsePolicyHash({}), null);
    assert.throws(
      () => parsePolicyHash({ version: 'four', learnerAddress: '', bytes: '1', sha256: sha }),
      /invalid policy hash: version: /,
    );
    assert.throws(
      () => parsePolicyHash({ version: '4294967296', learnerAddress: '', bytes: '1', sha256: sha }),
      /version: /,
    );
  });

  it('parses a policy config_json object only', () => {
    assert.deepEqual(parsePolicyConfig({ hidden_size: 64 }), { hidden_size: 64 });
    assert.throws(() => parsePolicyConfig([1, 2]), InvalidArgumentError);
    assert.throws(() => parsePolicyConfig(null), InvalidArgumentError);
  });

  it('parseJson names what was not JSON', () => {
    assert.deepEqual(parseJson('{"a":1}', 'x'), { a: 1 });
    assert.throws(
      () => parseJson('{', 'verified group 3/policy/p1'),
      /verified group 3\/policy\/p1 is not valid JSON/,
    );
    assert.deepEqual(describeIssues([]), []);
  });
});

describe('checkpoint layout', () => {
  it('names step directories and files once', () => {
    assert.equal(stepDirName(12), 'step-12');
    assert.equal(stepOfDirName('step-12'), 12);
    assert.equal(stepOfDirName('warmup'), null);
    assert.equal(CHECKPOINT_FILES.latest, 'latest.json');
    assert.equal(CHECKPOINT_FILES.trainerState, 'trainer_state.json');
  });

  it('records the task mix in trainer_state.json, optional for older checkpoints', () => {
    const state = {
      jobId: 'j',
      step: 3,
      phase: 'policy',
      policyVersion: 6,
      optimizerSteps: 12,
      rlOptimizerSteps: 4,
      totalOptimizerSteps: null,
      schedule: { kind: 'cosine', warmupRatio: 0.03, minLrRatio: 0.1 },
      learningRate: null,
      savedAt: '2026-01-01T00:00:00.000Z',
    };
    assert.equal(parseTrainerState(state).taskMix, undefined);
    const taskMix = { dataset: 'builtin', families: ['add', 'remainder'], difficulties: [1] };
    assert.deepEqual(parseTrainerState({ ...state, taskMix }).taskMix, taskMix);
    assert.throws(
      () => parseTrainerState({ ...state, taskMix: { ...taskMix, families: ['Add; rm'] } }),
      /trainer_state\.json/,
    );
    assert.throws(() => parseTrainerState({ ...state, taskMix: { ...taskMix, difficulties: [0] } }));
  });
});
