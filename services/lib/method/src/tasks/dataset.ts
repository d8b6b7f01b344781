// The embedded default dataset: seeded streams of synthetic problems with disjoint train and test splits.
// A problem's split is a pure function of its question text (a salted hash compared with the test
// fraction), independent of the seed, so train and test never share a question — whatever the seeds,
// counts or family mix of the two sides. Generation draws problems from the seeded RNG and keeps those
// that fall in the requested split (rejection sampling, bounded).
import { InvalidArgumentError } from '@spark/runtime/errors';
import {
  DIFFICULTIES,
  FAMILIES,
  generateProblem,
  type Difficulty,
  type Family,
  type GeneratedProblem,
} from './families.js';
import { hash32, Rng, type Seed } from './random.js';

export type Split = 'train' | 'test';

/** A generated problem with its stable id and split. */
export interface TaskProblem extends GeneratedProblem {
  /** `syn-<family>-<difficulty>-<hash of question, 8 hex>`: equal questions get equal ids. */
  readonly id: string;
  readonly split: Split;
}

/** The default share of the problem space that is held out for testing. */
export const DEFAULT_TEST_FRACTION = 0.2;

/** Salt of the split hash; changing it reshuffles which questions are test questions (never do so casually). */
const SPLIT_SALT = 'spark/tasks/split/v1';

/**
 * The split a question belongs to. `testFraction` must be the same on both sides for disjointness; it
 * selects the questions whose salted hash falls below `testFraction * 2^32`.
 */
export function splitOf(question: string, testFraction = DEFAULT_TEST_FRACTION): Split {
  checkFraction(testFraction);
  const h = hash32(`${SPLIT_SALT}\u0000${question}`);
  return h < testFraction * 0x100000000 ? 'test' : 'train';
}

function checkFraction(f: number): void {
  if (!(f > 0 && f < 1)) throw new InvalidArgumentError(`testFraction must be in (0, 1), got ${f}`);
}

/** Options of a generated dataset. */
export interface TaskDatasetOptions {
  readonly seed: Seed;
  readonly split: Split;
  /** How many problems (1..1,000,000). */
  readonly count: number;
  /** Families to draw from, uniformly (default: all). */
  readonly families?: readonly Family[];
  /** Difficulty levels to draw from, uniformly (default: all). */
  readonly difficulties?: readonly Difficulty[];
  /** Share of the question space held out for test (default 0.2). Use the same value for both splits. */
  readonly testFraction?: number;
  /** No repeated question within the dataset (default: true for test, false for train). */
  readonly unique?: boolean;
}

/**
 * The mix of the demo job: every family at levels 1 and 2 — level 1 is learnable by a tiny char-level
 * model in a few minutes, level 2 leaves visible headroom for RL to climb.
 */
export const DEMO_TASK_MIX: Pick<TaskDatasetOptions, 'families' | 'difficulties'> = Object.freeze({
  families: FAMILIES,
  difficulties: [1, 2] as const,
});

/** The demo task mix's highest difficulty (DEMO_TASK_MIX: every family, difficulties 1–2). */
const DEMO_MAX_DIFFICULTY = 2;

/**
 * The built-in task mix of a job spec: `taskFamilies` (empty = every family) at difficulties
 * 1..`taskMaxDifficulty` (0 = the demo mix's 1..2). The coordinator generates a job's problems from it,
 * the learner records it in each checkpoint, and `spark eval` evaluates on it by default.
 */
export function specTaskMix(spec: {
  readonly taskFamilies?: readonly string[];
  readonly taskMaxDifficulty?: number;
}): { families: readonly Family[]; difficulties: readonly Difficulty[] } {
  const families = spec.taskFamilies?.length ? (spec.taskFamilies as readonly Family[]) : FAMILIES;
  const max = spec.taskMaxDifficulty ?? 0;
  const difficulties = DIFFICULTIES.filter((d) => d <= (max > 0 ? max : DEMO_MAX_DIFFICULTY));
  return { families, difficulties };
}

/** Upper bound on `count` so a typo cannot ask for an unbounded loop. */
export const MAX_TASK_COUNT = 1_000_000;
/** Rejection-sampling attempts per produced problem before the generator reports an exhausted space. */
const ATTEMPTS_PER_PROBLEM = 2_000;

function validate(opts: TaskDatasetOptions): {
  families: readonly Family[];
  difficulties: readonly Difficulty[];
  testFraction: number;
  unique: boolean;
} {
  const problems: string[] = [];
  if (!Number.isInteger(opts.count) || opts.count < 1 || opts.count > MAX_TASK_COUNT) {
    problems.push(`count must be an integer in [1, ${MAX_TASK_COUNT}], got ${opts.count}`);
  }
  if (opts.split !== 'train' && opts.split !== 'test') problems.push(`split must be "train" or "test"`);
  const families = opts.families ?? FAMILIES;
  if (families.length === 0) problems.push('families must not be empty');
  for (const f of families) if (!FAMILIES.includes(f)) problems.push(`unknown family "${String(f)}"`);
  const difficulties = opts.difficulties ?? DIFFICULTIES;
  if (difficulties.length === 0) problems.push('difficulties must not be empty');
  for (const d of difficulties)
    if (!DIFFICULTIES.includes(d)) problems.push(`unknown difficulty ${String(d)}`);
  const testFraction = opts.testFraction ?? DEFAULT_TEST_FRACTION;
  if (!(testFraction > 0 && testFraction < 1))
    problems.push(`testFraction must be in (0, 1), got ${testFraction}`);
  if (problems.length) throw new InvalidArgumentError('invalid task dataset options', problems);
  return { families, difficulties, testFraction, unique: opts.unique ?? opts.split === 'test' };
}

/**
 * Streams `count` problems of one split, deterministically for a seed. Each problem draws its family and
 * difficulty uniformly, then its numbers, and is kept only if its question belongs to the split (and, with
 * `unique`, was not produced before). Throws InvalidArgumentError when the requested space is exhausted.
 */
export function* iterateTasks(opts: TaskDatasetOptions): Generator<TaskProblem> {
  const { families, difficulties, testFraction, unique } = validate(opts);
  const rng = new Rng(`spark/tasks/${String(opts.seed)}/${opts.split}`);
  const seen = new Set<string>();
  for (let produced = 0; produced < opts.count; produced++) {
    let found: TaskProblem | null = null;
    for (let attempt = 0; attempt < ATTEMPTS_PER_PROBLEM && !found; attempt++) {
      const p = generateProblem(rng, rng.pick(families), rng.pick(difficulties));
      if (splitOf(p.question, testFraction) !== opts.split) continue;
      if (unique && seen.has(p.question)) continue;
      if (unique) seen.add(p.question);
      found = { ...p, id: problemId(p), split: opts.split };
    }
    if (!found) {
      throw new InvalidArgumentError(
        `cannot generate ${opts.count} ${unique ? 'unique ' : ''}${opts.split} problems: only ${produced} found ` +
          `(families ${families.join(',')}, difficulties ${difficulties.join(',')}); ask for fewer or widen the mix`,
      );
    }
    yield found;
  }
}

/** `iterateTasks` collected into an array. */
export function generateTasks(opts: TaskDatasetOptions): TaskProblem[] {
  return [...iterateTasks(opts)];
}

/** The stable id of a problem: family, difficulty and a hash of the question. */
export function problemId(p: Pick<GeneratedProblem, 'family' | 'difficulty' | 'question'>): string {
  return `syn-${p.family}-${p.difficulty}-${hash32(p.question).toString(16).padStart(8, '0')}`;
}
