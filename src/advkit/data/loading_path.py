"""Which path a run's training data takes, in memory or streamed, and with how many data workers.

The rule (``--data-loading auto``): a source that can stream (an image folder, a user Dataset)
streams when its decoded training split would exceed the memory budget; otherwise it is decoded
once into memory, the fast path. Arrays (idx, CIFAR pickles, .npz) are read whole by their
readers and always live in memory. The budget is half the memory available now (``MemAvailable``)
divided among the workers on this machine, and on CUDA at most half the GPU's memory (the
in-memory training set lives on the device); ``$ADVKIT_MEMORY_BUDGET`` (bytes, or with a K, M, G
or T suffix) replaces it.
"""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass
from typing import Any

import torch

from advkit.data.errors import DataError
from advkit.data.streaming import StreamingData, StreamingSplits

BUDGET_ENV = "ADVKIT_MEMORY_BUDGET"
#: Share of the available memory the in-memory training set may take.
BUDGET_FRACTION = 0.5
#: Most data workers ``auto`` starts per training process.
MAX_AUTO_WORKERS = 8
PATHS = ("auto", "memory", "stream")

_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class LoadingPath:
    """The decision, with what it was made from (for the log and model.json)."""

    path: str  # "memory" or "stream"
    reason: str
    workers: int  # data worker processes (decoding), 0: none
    decoded_bytes: int | None = None  # the training split decoded, when it can stream
    budget_bytes: int | None = None

    def record(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        workers = {0: "no data workers"}.get(self.workers, f"{self.workers} data workers")
        return f"data: {self.path}, {self.reason}; {workers}"


def parse_bytes(text: str) -> int:
    """``"2G"``, ``"500M"``, ``"1.5G"`` or ``"123456"`` as a count of bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.IGNORECASE)
    if not match:
        raise DataError(
            f"${BUDGET_ENV}={text!r} is not a size: write bytes, or a number with K, M, G or T "
            "(e.g. 8G)"
        )
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")


def _local_workers() -> int:
    """Training processes on this machine (torch's launcher says; else one)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


def memory_budget(device: torch.device) -> tuple[int, str]:
    """Bytes the in-memory training set may take, and how that was decided (for the log)."""
    env = os.environ.get(BUDGET_ENV, "").strip()
    if env:
        return parse_bytes(env), f"${BUDGET_ENV}"
    local = _local_workers()
    budget = int(_available_memory() * BUDGET_FRACTION) // local
    said = f"{BUDGET_FRACTION:.0%} of available memory"
    said += f" / {local} workers" if local > 1 else ""
    if device.type == "cuda":
        gpu = int(torch.cuda.get_device_properties(device).total_memory * BUDGET_FRACTION)
        if gpu < budget:
            budget, said = gpu, f"{BUDGET_FRACTION:.0%} of the GPU's memory"
    return budget, said


def auto_workers() -> int:
    """``--data-workers auto``: the CPUs this process may use, shared among the training
    processes on the machine, less one for the training process itself; at least 1, at most
    ``MAX_AUTO_WORKERS``."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_WORKERS, cpus // _local_workers() - 1))


def decoded_bytes(data: StreamingData) -> int:
    """Bytes of ``data`` decoded into memory."""
    pixels = 1
    for n in data.image_shape:
        pixels *= n
    return len(data) * pixels * torch.empty((), dtype=data.dtype).element_size()


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def choose_path(
    splits: Any, requested: str, workers: int | None, device: torch.device
) -> LoadingPath:
    """The path of ``splits`` (a ``DataSplits`` in memory, or :class:`StreamingSplits`) under
    ``requested`` ("auto", "memory", "stream"); ``workers`` None means :func:`auto_workers`.
    DataError when "stream" is asked of data that cannot stream."""
    if requested not in PATHS:
        raise DataError(f"data loading must be one of {', '.join(PATHS)}, got {requested!r}")
    if not isinstance(splits, StreamingSplits):
        if requested == "stream":
            raise DataError(cannot_stream(splits.dataset))
        return LoadingPath("memory", f"{splits.dataset} is read as arrays", 0)
    count = auto_workers() if workers is None else workers
    size = decoded_bytes(splits.train)
    if requested != "auto":
        return LoadingPath(requested, f"--data-loading {requested}", count, size)
    budget, said = memory_budget(device)
    over = size > budget
    reason = f"the decoded training split ({_size(size)}) {'exceeds' if over else 'fits'} the "
    reason += f"memory budget ({_size(budget)}: {said})"
    return LoadingPath("stream" if over else "memory", reason, count, size, budget)


def cannot_stream(dataset: str) -> str:
    """The one-line refusal of ``--data-loading stream`` for array data."""
    return (
        f"{dataset} is read from array files, which load whole: it cannot stream; use "
        "--data-loading auto or memory (image folders and Datasets stream)"
    )
