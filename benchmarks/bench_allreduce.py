"""All-reduce time against message size on two gloo workers, fitted to t = latency + bytes/bw.

The fit is the communication term of the step-time model in BENCHMARKS.md
(step = compute / W + all-reduce of the gradient bytes). Each size is reduced ``--repeats``
times after a warm-up; the median is kept.

    .venv/bin/python benchmarks/bench_allreduce.py
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SIZES = [2**k for k in range(10, 27, 2)]  # 1 KiB .. 64 MiB of float32


def _worker(rank: int, port: int, repeats: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=120))
    rows = []
    for size in SIZES:
        tensor = torch.ones(size // 4)
        for _ in range(3):
            dist.all_reduce(tensor)
        times = []
        for _ in range(repeats):
            dist.barrier()
            start = time.perf_counter()
            dist.all_reduce(tensor)
            times.append(time.perf_counter() - start)
        rows.append((size, statistics.median(times)))
    if rank == 0:
        torch.save(rows, out)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rows.pt")
        mp.start_processes(_worker, args=(port, args.repeats, out), nprocs=2, start_method="spawn")
        rows = torch.load(out)
    sizes = np.array([s for s, _ in rows], dtype=float)
    seconds = np.array([t for _, t in rows])
    slope, intercept = np.polyfit(sizes, seconds, 1)
    print(f"# torch {torch.__version__}, gloo, 2 workers on one machine ({os.cpu_count()} cores)")
    print("| bytes | all-reduce ms | fit ms |")
    print("| --- | --- | --- |")
    for size, took in rows:
        print(f"| {size:,} | {took * 1e3:.3f} | {(intercept + slope * size) * 1e3:.3f} |")
    print(f"fit: latency {intercept * 1e6:.0f} us, bandwidth {1 / slope / 1e9:.2f} GB/s "
          "(bytes of the tensor per second, ring of 2)")  # fmt: skip
    sys.stdout.flush()


if __name__ == "__main__":
    main()
