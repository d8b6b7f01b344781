#!/usr/bin/env python3
"""PyTorch's side of the GPU check's GEMM throughput (kernels/gpu-check/gpu-check.rs, `--json FILE`).

Usage: python3 torch_gemm.py REPORT.json [--device cuda:N]

Reads the shapes and Spark's figures from REPORT.json (the `gemm` array the check writes), times
torch.matmul(A, B.T) on the same device with the same shapes, precisions and timing (3 warm-up products,
5 rounds of 20 back-to-back products, the median round) and prints a side-by-side table with Spark / PyTorch
ratios. bf16: BF16 inputs and output (PyTorch's usual training matmul; Spark writes FP32 C). tf32: FP32
inputs with torch.backends.cuda.matmul.allow_tf32 = True. Needs PyTorch with CUDA; no network, no Node.js.
"""
import argparse
import json
import statistics
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("report")
    ap.add_argument("--device", default="cuda:0")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("torch_gemm: PyTorch is not installed here", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("torch_gemm: PyTorch sees no CUDA device", file=sys.stderr)
        return 2
    with open(args.report, encoding="utf-8") as f:
        report = json.load(f)
    rates = report.get("gemm") or []
    if not rates:
        print("torch_gemm: the report has no GEMM figures (did every op pass?)", file=sys.stderr)
        return 1
    dev = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    gen = torch.Generator(device=dev).manual_seed(42)
    print(f"torch_gemm: PyTorch {torch.__version__} on {torch.cuda.get_device_name(dev)}")
    print(f"{'m x n x k':>24} {'prec':<5} {'Spark TFLOP/s':>14} {'PyTorch TFLOP/s':>16} {'ratio':>7}")
    worst = None
    for r in rates:
        m, n, k, prec = r["m"], r["n"], r["k"], r["precision"]
        dtype = torch.bfloat16 if prec == "bf16" else torch.float32
        a = torch.rand((m, k), generator=gen, device=dev, dtype=dtype) * 2 - 1
        b = torch.rand((n, k), generator=gen, device=dev, dtype=dtype) * 2 - 1
        for _ in range(3):
            torch.matmul(a, b.T)
        torch.cuda.synchronize(dev)
        rounds = []
        for _ in range(5):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(20):
                torch.matmul(a, b.T)
            end.record()
            torch.cuda.synchronize(dev)
            rounds.append(start.elapsed_time(end) / 20)
        ms = statistics.median(rounds)
        theirs = 2 * m * n * k / (ms * 1e-3) / 1e12
        ratio = r["tflops"] / theirs
        worst = ratio if worst is None else min(worst, ratio)
        print(f"{m:>7} x {n:>6} x {k:>5} {prec:<5} {r['tflops']:>14.1f} {theirs:>16.1f} {ratio:>6.2f}x")
        del a, b
    print(f"torch_gemm: lowest ratio {worst:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
