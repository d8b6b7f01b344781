// The learner group's shape: how many ranks train one model together (SPARK_LEARNER_RANKS, the world size)
// and which one this process is (SPARK_LEARNER_RANK, or the ordinal of a StatefulSet pod's hostname
// `<name>-<n>`). Rank 0 is the leader: the only rank that talks to the coordinator's queues, serves
// PolicyService and writes checkpoints. One rank (the default) is the single learner, with no collective.
import { hostname } from 'node:os';

import { ConfigError } from '@spark/runtime';

export interface RankAssignment {
  readonly rank: number;
  readonly worldSize: number;
  /** Where the rank came from: a single learner, SPARK_LEARNER_RANK, or the hostname's ordinal. */
  readonly source: 'single' | 'config' | 'hostname';
}

/** A StatefulSet pod's hostname ends in `-<ordinal>`. */
const ORDINAL = /-(\d{1,6})$/;

/**
 * The rank of this process: `learnerRank` when set (≥ 0), else the ordinal of `host` (a StatefulSet pod's
 * hostname); with one rank, 0. A ConfigError names every problem (a rank outside the world, no rank to
 * derive).
 */
export function resolveRank(
  config: { readonly learnerRanks: number; readonly learnerRank: number },
  host: string = hostname(),
): RankAssignment {
  const worldSize = config.learnerRanks;
  const problems: string[] = [];
  let rank: number;
  let source: RankAssignment['source'];
  if (config.learnerRank >= 0) {
    rank = config.learnerRank;
    source = 'config';
  } else if (worldSize === 1) {
    return { rank: 0, worldSize, source: 'single' };
  } else {
    const m = ORDINAL.exec(host);
    if (!m) {
      throw new ConfigError('learner', [
        `learnerRank (SPARK_LEARNER_RANK): not set, and the hostname "${host}" has no StatefulSet ordinal (-<n>) to derive it from`,
      ]);
    }
    rank = Number(m[1]);
    source = 'hostname';
  }
  if (rank >= worldSize) {
    problems.push(
      `learnerRank (SPARK_LEARNER_RANK): rank ${rank}${source === 'hostname' ? ` (from hostname "${host}")` : ''} is outside a group of ${worldSize} (learnerRanks, SPARK_LEARNER_RANKS)`,
    );
  }
  if (problems.length) throw new ConfigError('learner', problems);
  return { rank, worldSize, source };
}
