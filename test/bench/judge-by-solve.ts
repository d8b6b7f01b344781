// `node --import tsx test/bench/judge-by-solve.ts NAME=ANSWERS_DIR,JUDGE_DIR …`: is the judge more than a
// second solver? For each model, the reward-benchmark items (`spark eval --judge --out JUDGE_DIR`) are split
// by whether the same model answers their problem correctly (`spark eval --out ANSWERS_DIR`, same items,
// greedy): a judge whose written check re-solves the problem is right when it can solve it and near chance
// when it cannot. Also: how often the check's own re-solve ("…, so 51+9=60.") reaches the gold answer.
// Prints a markdown table. A measurement over files `spark eval` wrote, not a test.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

interface AnswerRecord {
  id: string;
  answer: string;
  correct: boolean;
}
interface JudgeRecord {
  promptId: string;
  style: string;
  output: string;
  correct: boolean;
}

const lines = <T>(file: string): T[] =>
  readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as T);

const args = process.argv.slice(2);
if (args.length === 0 || args.some((a) => !/^[^=]+=[^,]+,[^,]+$/.test(a))) {
  process.stderr.write('usage: judge-by-solve.ts NAME=ANSWERS_DIR,JUDGE_DIR …\n');
  process.exit(2);
}

const pct = (n: number, d: number): string => (d ? `${((100 * n) / d).toFixed(1)} (${d})` : '—');
const rows: string[] = [];
for (const arg of args) {
  const [name, dirs] = arg.split('=') as [string, string];
  const [answersDir, judgeDir] = dirs.split(',') as [string, string];
  const answers = new Map(
    lines<AnswerRecord>(join(answersDir, 'results.jsonl')).map((r) => [r.id, r] as const),
  );
  // right / total per group
  const count = () => ({ right: 0, n: 0 });
  const tally = { solved: count(), unsolved: count(), checkGold: count(), checkOther: count() };
  let checks = 0;
  let checksAtGold = 0;
  for (const j of lines<JudgeRecord>(join(judgeDir, 'results.jsonl'))) {
    // promptId: j-<style>-<problem id>
    const id = j.promptId.slice(`j-${j.style}-`.length);
    const a = answers.get(id);
    if (!a) continue;
    const bucket = a.correct ? tally.solved : tally.unsolved;
    bucket.right += j.correct ? 1 : 0;
    bucket.n += 1;
    // the check's re-solve: "so <expression>=<value>." before the shown answer(s) are compared
    const solve = /so [^=.]*=\s*(-?[\d./]+)\./.exec(j.output);
    if (solve) {
      checks += 1;
      const reaches = solve[1] === a.answer;
      if (reaches) checksAtGold += 1;
      const b = reaches ? tally.checkGold : tally.checkOther;
      b.right += j.correct ? 1 : 0;
      b.n += 1;
    }
  }
  const { solved: s, unsolved: u, checkGold: g, checkOther: o } = tally;
  rows.push(
    `| ${name} | ${pct(s.right + u.right, s.n + u.n)} | ${pct(s.right, s.n)} | ${pct(u.right, u.n)} | ${pct(checksAtGold, checks)} | ${pct(g.right, g.n)} | ${pct(o.right, o.n)} |`,
  );
}
process.stdout.write(
  [
    '| model | judge accuracy (items) | on problems it answers right | on problems it answers wrong | check re-solve reaches the gold | judge when it does | judge when it does not |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...rows,
  ].join('\n') + '\n',
);
