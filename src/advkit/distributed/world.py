"""The world a run trains in: rank, size, the process group, and the few collectives the loop uses.

One process is the trivial world (rank 0 of 1): every operation below is then a no-op or the
identity, so the training loop calls the same seam whether it runs alone or on N workers, and
never asks how many there are. With several workers the process group is torch.distributed's,
started from the ``env://`` variables that torch's elastic launcher (``torchrun`` or ``advkit
--nproc``) sets, or one the user started before calling ``advkit.train``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from advkit.errors import UserError

log = logging.getLogger("advkit.distributed")

#: Seconds a collective may wait for the other workers before failing (env ADVKIT_DIST_TIMEOUT).
DEFAULT_TIMEOUT = 600.0
BACKENDS = ("auto", "gloo", "nccl")


class DistributedError(UserError, RuntimeError):
    """A distributed set-up a user must change (world size, backend, batch size...)."""


@dataclass(frozen=True)
class World:
    """This process's place among the workers; ``World()`` is the single process."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    #: where the collectives' own small tensors live: the GPU under NCCL, else the CPU.
    device: str = "cpu"
    #: the group of the host-side exchanges (a stop flag each step, numbers, pickled objects,
    #: barriers): under NCCL a gloo group beside it, so that they never wait for the GPU's
    #: queued work (an NCCL all-reduce read back with ``.item()`` does); None: the default group.
    host_group: Any = field(default=None, compare=False, repr=False)

    @property
    def is_writer(self) -> bool:
        """Only rank 0 writes the run folder, logs progress and draws bars."""
        return self.rank == 0

    # ------------------------------------------------------------------ data
    def shard(self, n: int) -> slice:
        """This rank's contiguous slice of ``n`` items split in rank order, sizes within one."""
        return slice(n * self.rank // self.size, n * (self.rank + 1) // self.size)

    def check_divides(self, batch_size: int) -> None:
        if batch_size % self.size:
            raise DistributedError(
                f"--batch-size {batch_size} is the global batch and must split evenly over "
                f"{self.size} workers: choose a multiple of {self.size}, or another --nproc"
            )

    # ------------------------------------------------------------------ model
    def wrap(self, model: nn.Module) -> nn.Module:
        """The module whose backward synchronizes gradients: DDP with several workers.

        Buffers are not broadcast from rank 0 at each forward (BatchNorm statistics stay per
        shard, as on one device per shard); ``average_buffers`` reconciles them when it matters.
        static_graph stays off: it corrupts gradients once autograd.grad runs through the wrapper.
        """
        if self.size == 1:
            return model
        device = next(model.parameters()).device
        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids, forward_sync_buffers=False)

    def average_buffers(self, model: nn.Module) -> None:
        """Average floating-point buffers (BatchNorm running statistics) over the workers."""
        if self.size == 1:
            return
        for buffer in model.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer.div_(self.size)

    # ------------------------------------------------------------------ collectives
    def all_reduce_sum(self, tensor: Tensor) -> Tensor:
        """Sum ``tensor`` over the workers, in place; returns it."""
        if self.size > 1:
            dist.all_reduce(tensor)
        return tensor

    def all_gather(self, tensor: Tensor) -> list[Tensor]:
        """Every rank's ``tensor`` (same shape on every rank), in rank order."""
        if self.size == 1:
            return [tensor]
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous())
        return parts

    def gather_objects(self, obj: Any) -> list[Any] | None:
        """Rank 0 gets every rank's ``obj`` in rank order; the others get None."""
        if self.size == 1:
            return [obj]
        parts: list[Any] = [None] * self.size if self.is_writer else []
        dist.gather_object(obj, parts if self.is_writer else None, dst=0, group=self.host_group)
        return parts if self.is_writer else None

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if self.size == 1:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0, group=self.host_group)
        return box[0]

    def agree(self, flag: bool) -> bool:
        """True on every rank if ``flag`` is true on any (a stop request seen by one worker);
        called each training step, so it goes through the host group (no device sync)."""
        if self.size == 1:
            return flag
        return self.sum_number(float(flag)) > 0

    def sum_number(self, value: float) -> float:
        """A Python number summed over the workers."""
        if self.size == 1:
            return value
        device = "cpu" if self.host_group is not None else self.device
        total = torch.tensor([float(value)], dtype=torch.float64, device=device)
        dist.all_reduce(total, group=self.host_group)
        return float(total.item())

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier(group=self.host_group)


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        raise DistributedError(f"${name} must be an integer, got {os.environ[name]!r}") from None


def restarted() -> bool:
    """True in workers torch's elastic launcher restarted after a failure: they resume."""
    return _env_int("TORCHELASTIC_RESTART_COUNT", 0) > 0


def current_rank() -> int:
    """This process's rank: from the process group if one is up, else the launcher's $RANK."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return _env_int("RANK", 0)


def timeout_seconds() -> float:
    """The collectives' timeout: $ADVKIT_DIST_TIMEOUT seconds, else ``DEFAULT_TIMEOUT``."""
    text = os.environ.get("ADVKIT_DIST_TIMEOUT")
    if text is None:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DistributedError(
            f"$ADVKIT_DIST_TIMEOUT must be a number of seconds > 0, got {text!r}"
        )
    return value


def pick_backend(backend: str, device: torch.device) -> str:
    """gloo on CPU, NCCL on CUDA, unless ``backend`` names one."""
    if backend not in BACKENDS:
        raise DistributedError(
            f"--dist-backend must be one of {', '.join(BACKENDS)}, got {backend!r}"
        )
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl" and device.type != "cuda":
        raise DistributedError(
            "the nccl backend needs CUDA devices: use --dist-backend gloo on CPU"
        )
    return backend


def worker_device(device: torch.device, world: World) -> torch.device:
    """One GPU per local rank: ``cuda`` becomes ``cuda:<local rank>``."""
    if device.type == "cuda" and device.index is None and world.size > 1:
        return torch.device("cuda", world.local_rank)
    return device


def init_world(device: torch.device, backend: str = "auto") -> World:
    """The world this process runs in, starting the process group if the launcher asked for one.

    A group the caller already started is used as it is (under NCCL, with this rank's GPU made
    current and a gloo group added beside it: ``World.host_group``). Without ``WORLD_SIZE`` > 1
    in the environment, the single-process world (no process group, nothing to pay).
    """
    if dist.is_available() and dist.is_initialized():
        world = World(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))
        if dist.get_backend() == "nccl":
            device = worker_device(device, world)
            torch.cuda.set_device(device)  # NCCL's object collectives use the current device
            timeout = timedelta(seconds=timeout_seconds())
            world = replace(world, device=str(device), host_group=_host_group(timeout))
        return world
    size = _env_int("WORLD_SIZE", 1)
    if size <= 1:
        return World()
    world = World(_env_int("RANK", 0), size, _env_int("LOCAL_RANK", 0))
    device = worker_device(device, world)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    chosen = pick_backend(backend, device)
    if chosen == "nccl":
        world = replace(world, device=str(device))
    timeout = timedelta(seconds=timeout_seconds())
    dist.init_process_group(
        chosen, store=_attempt_store(world, timeout), rank=world.rank, world_size=world.size,
        timeout=timeout,
    )  # fmt: skip
    if chosen == "nccl":
        world = replace(world, host_group=_host_group(timeout))
    log.debug("rank %d of %d joined the %s process group", world.rank, world.size, chosen)
    return world


def _host_group(timeout: timedelta) -> Any:
    """A gloo group of every rank beside an NCCL default group, for the host-side exchanges
    (``World.host_group``); a collective: every rank calls it, once."""
    return dist.new_group(backend="gloo", timeout=timeout)


def _attempt_store(world: World, timeout: timedelta) -> dist.Store:
    """The env:// store, with keys private to this launch attempt.

    After a restart, torch's elastic agent hands the workers the store of the first attempt
    again; its keys (each rank's gloo address) are stale, and a worker that reads its peer's
    old address before the peer rewrote it fails to connect. A prefix per attempt
    (``TORCHELASTIC_RESTART_COUNT``) keeps each attempt's keys apart.
    """
    hosts = os.environ.get("TORCHELASTIC_USE_AGENT_STORE") != "True" and world.rank == 0
    store = dist.TCPStore(
        os.environ.get("MASTER_ADDR", "127.0.0.1"), _env_int("MASTER_PORT", 29500),
        world.size, is_master=hosts, timeout=timeout,
    )  # fmt: skip
    attempt = _env_int("TORCHELASTIC_RESTART_COUNT", 0)
    return dist.PrefixStore(f"advkit/attempt_{attempt}", store)


def close_world(world: World) -> None:
    """Leave the process group this module started (a user's own group is left alone)."""
    if world.size > 1 and dist.is_initialized() and os.environ.get("TORCHELASTIC_RUN_ID"):
        dist.destroy_process_group()
