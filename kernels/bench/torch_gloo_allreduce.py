#!/usr/bin/env python3
"""PyTorch's own Gloo all-reduce figure, for the collective benchmark (kernels/bench/collective.ts).

Spawns N processes (torch.multiprocessing) in a torch.distributed Gloo group over loopback TCP; rank 0 times
`dist.all_reduce(tensor)` (in place, float32, SUM) at each size and prints one line per size:
  RESULT <bytes> <seconds per all-reduce>
Run with /usr/bin/python3 (Debian python3-torch, whose torch.distributed uses the same Gloo).
"""
import argparse
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def run(rank, world, port, sizes, iters, warmup):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    for nbytes in sizes:
        x = torch.ones(nbytes // 4, dtype=torch.float32)
        for _ in range(warmup):
            dist.all_reduce(x)
        dist.barrier()
        t0 = time.perf_counter()
        for _ in range(iters):
            dist.all_reduce(x)
        dist.barrier()
        dt = (time.perf_counter() - t0) / iters
        if rank == 0:
            print(f"RESULT {nbytes} {dt:.9f}", flush=True)
    dist.destroy_process_group()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--sizes", default="1048576,4194304,16777216,67108864")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sizes = [int(x) for x in a.sizes.split(",")]
    mp.spawn(run, args=(a.ranks, port, sizes, a.iters, a.warmup), nprocs=a.ranks, join=True)


if __name__ == "__main__":
    main()
