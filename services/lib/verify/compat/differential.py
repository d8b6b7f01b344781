"""Differential test: scores corpus.jsonl with Hugging Face's Math-Verify and with Spark's verifier
(src/compat/score-spark.ts) and prints the agreement and every difference, by category.

Run through `pnpm --filter @spark/verify run compat` (CI: `--min-agreement 90`) (compat/run.sh makes the venv). Each corpus line is
{"cat", "pred" (a model response), "gold" (the label), "expect" (the reward we believe is right),
"opts"? (Spark item options, e.g. {"unboxed": true})}. Math-Verify gets gold as `$gold$` and the response
as is, with its default extraction (LaTeX and plain expressions, boxed answers first).
"""

import argparse
import json
import os
import subprocess
import sys
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))


def math_verify_scores(rows):
    from math_verify import parse, verify  # imported late: the runner reports a missing install

    out = []
    for r in rows:
        try:
            gold = parse("$" + r["gold"] + "$")
            pred = parse(r["pred"])
            out.append(1 if verify(gold, pred) else 0)
        except Exception:  # noqa: BLE001 - any failure is a 0, as in training
            out.append(0)
    return out


def spark_scores(corpus, lib):
    cmd = ["node", "--import", "tsx", os.path.join(HERE, "..", "src", "compat", "score-spark.ts"), corpus]
    if lib:
        cmd += ["--lib", lib]
    res = subprocess.run(cmd, cwd=os.path.dirname(HERE), capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        sys.exit(f"score-spark.ts failed ({res.returncode}):\n{res.stderr[-4000:]}")
    return [json.loads(l) for l in res.stdout.splitlines() if l.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=os.path.join(HERE, "corpus.jsonl"))
    ap.add_argument("--lib", default=None, help="another build's src/index.ts to score with")
    ap.add_argument("--json", default=None, help="write every row's scores to this file")
    ap.add_argument(
        "--min-agreement",
        type=float,
        default=None,
        help="exit 1 when the agreement with Math-Verify is below this percentage (CI's regression bound)",
    )
    a = ap.parse_args()
    with open(a.corpus) as f:
        rows = [json.loads(l) for l in f if l.strip()]
    mv = math_verify_scores(rows)
    sp = spark_scores(a.corpus, a.lib)
    if len(sp) != len(rows):
        sys.exit(f"spark scored {len(sp)} of {len(rows)} rows")
    agree = sum(1 for m, s in zip(mv, sp) if m == s["reward"])
    right_mv = sum(1 for m, r in zip(mv, rows) if m == r["expect"])
    right_sp = sum(1 for s, r in zip(sp, rows) if s["reward"] == r["expect"])
    n = len(rows)
    print(f"corpus: {n} pairs ({sum(r['expect'] for r in rows)} should be accepted)")
    print(f"agreement with Math-Verify: {agree}/{n} = {100 * agree / n:.1f}%")
    print(f"matches the expected reward: Math-Verify {right_mv}/{n}, Spark {right_sp}/{n}")
    diff_by_cat = Counter()
    print("\ndifferences (category | expected | Math-Verify | Spark (reason) | gold | response):")
    for r, m, s in zip(rows, mv, sp):
        if m != s["reward"]:
            diff_by_cat[r["cat"]] += 1
            print(f"  {r['cat']} | {r['expect']} | {m} | {s['reward']} ({s['reason']}) | {r['gold']} | {r['pred']}")
    print("\ndifferences by category: " + (", ".join(f"{c} {k}" for c, k in sorted(diff_by_cat.items())) or "none"))
    if a.json:
        with open(a.json, "w") as f:
            json.dump([{**r, "mathVerify": m, "spark": s} for r, m, s in zip(rows, mv, sp)], f, indent=1)
    if a.min_agreement is not None and 100 * agree / n < a.min_agreement:
        sys.exit(f"agreement {100 * agree / n:.1f}% is below the bound of {a.min_agreement}%")


if __name__ == "__main__":
    main()
