"""Run a test function on N gloo workers (spawned processes) and collect what each returns.

Each spawn costs seconds, so a test batches several checks into one worker function. The
process group's timeout is short: a bug fails the test instead of hanging CI.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from advkit.distributed import World
from advkit.distributed.launch import free_port

TIMEOUT_SECONDS = 60


def _entry(rank: int, fn: Callable, size: int, port: int, out: str, args: tuple) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(size), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port), ADVKIT_DIST_TIMEOUT=str(TIMEOUT_SECONDS),
    )  # fmt: skip
    torch.set_num_threads(1)
    dist.init_process_group("gloo", timeout=timedelta(seconds=TIMEOUT_SECONDS))
    try:
        result = fn(World(rank, size, rank), *args)
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def run_workers(fn: Callable[..., Any], tmp_path: Path, *args: Any, size: int = 2) -> list[Any]:
    """``fn(world, *args)`` on ``size`` workers; returns their results in rank order.

    ``fn`` must be a module-level function (it is pickled into spawned processes).
    """
    out = tmp_path / "worker-results"
    out.mkdir(parents=True, exist_ok=True)
    mp.start_processes(
        _entry, args=(fn, size, free_port(), str(out), args), nprocs=size, join=True,
        start_method="spawn",
    )  # fmt: skip
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(size)]
