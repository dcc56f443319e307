"""Cost of each gradient compression's hook against fp32 all-reduce, side by side on two gloo
workers: forward + backward of one fixed batch through DDP, per compression, rounds interleaved.

    .venv/bin/python benchmarks/bench_compression.py [--model cnn-small] [--batch 1024]

Each worker (one thread) builds one DDP copy of the model per compression (the same initial
weights, wrapped as the trainer wraps it: ``World.wrap``), PowerSGD's first: built after another
copy in the same process, its hook aborts a gloo worker on cnn-bn (``terminate called without an
active exception``; training, one DDP per process, is not affected). It warms each up (DDP
rebuilds its buckets after the first iteration, PowerSGD compresses from its third), then runs
``--rounds`` rounds; in each round every compression runs ``--steps`` backward passes and the
median step is kept. Printed: the median step per compression and its ratio to "none" (median
and range over the rounds), and the hook's own span (``comm_seconds`` per step). On one machine
the wire is fast, so this is what the hooks cost in compute, not what they save on a network.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from advkit.distributed import World
from advkit.distributed.compression import COMPRESSIONS, attach_communication
from advkit.distributed.launch import free_port
from advkit.models import create_model


def _worker(rank: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2, timeout=timedelta(seconds=300))
    torch.manual_seed(0)
    inputs = torch.rand(args.batch // 2, 1, 28, 28)
    labels = torch.randint(0, 10, (args.batch // 2,))
    copies = {}
    for name in sorted(args.compressions, key=lambda name: name != "powersgd"):
        torch.manual_seed(0)
        model = World(rank, 2, rank).wrap(create_model(args.model, num_classes=10))
        comm = attach_communication(model, name, seed=0, rank=rank)
        copies[name] = (model, comm)

    def step(model: torch.nn.Module) -> float:
        model.zero_grad(set_to_none=True)
        dist.barrier()
        start = time.perf_counter()
        F.cross_entropy(model(inputs), labels).backward()
        return time.perf_counter() - start

    for model, _ in copies.values():
        for _ in range(3):
            step(model)
    for _, comm in copies.values():
        comm.take()
    rounds: dict[str, list[float]] = {name: [] for name in args.compressions}
    spans: dict[str, list[float]] = {name: [] for name in args.compressions}
    for _ in range(args.rounds):
        for name, (model, comm) in copies.items():
            rounds[name].append(statistics.median(step(model) for _ in range(args.steps)))
            taken = comm.take()
            spans[name].append(taken["comm_seconds"] / max(taken["comm_iterations"], 1))
    if rank == 0:
        torch.save({"rounds": rounds, "spans": spans}, out)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cnn-small")
    parser.add_argument("--batch", type=int, default=1024, help="global batch (2 workers)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--compressions", nargs="+", default=list(COMPRESSIONS),
                        choices=COMPRESSIONS)  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "rows.pt")
        mp.start_processes(_worker, args=(free_port(), args, out), nprocs=2, start_method="spawn")
        result = torch.load(out)
    rounds, spans = result["rounds"], result["spans"]
    print(f"{args.model}, global batch {args.batch} on 2 gloo workers x 1 thread, "
          f"{args.rounds} rounds x {args.steps} steps\n")  # fmt: skip
    print("| compression | forward+backward ms | ratio to none (median, range) | hook span ms |")
    print("| --- | --- | --- | --- |")
    for name in args.compressions:
        ratios = [a / b for a, b in zip(rounds[name], rounds["none"], strict=True)]
        print(
            f"| {name} | {1e3 * statistics.median(rounds[name]):.1f} | "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) | "
            f"{1e3 * statistics.median(spans[name]):.2f} |"
        )


if __name__ == "__main__":
    main()
