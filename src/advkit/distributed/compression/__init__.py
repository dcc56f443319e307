"""Gradient compression as DDP communication hooks, with communication accounting.

``attach_communication(ddp_model, "int8")`` registers the hook for a compression on a
DistributedDataParallel model and returns the ``Communication`` that counts, per iteration,
what this worker hands to collectives (payload), a ring-model estimate of what it puts on the
wire, and the span of time gradient synchronization takes (definitions in ``communication``).
"none" gets an accounting hook too (DDP's own reduction, to the bit).

Compressions: ``none`` fp32 all-reduce; ``fp16`` torch's hook; ``bf16`` our own (torch's is
refused off NCCL); ``int8`` one-sided, DAT's scheme (Zhang et al., UAI 2022): per-block absmax
scales, stochastic rounding, all_gather; ``int8-2sided`` all_to_all of int8 chunks, average,
requantize, all_gather; ``powersgd`` torch's (Vogels et al., NeurIPS 2019). The int8 hooks may
carry error feedback. Works on gloo (CPU) and NCCL.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from torch import distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from advkit.distributed.compression.communication import (
    WIRE_SHARE,
    Communication,
    CompressionError,
    Hook,
    run_hook,
)
from advkit.distributed.compression.hooks import AllReduce as _AllReduce
from advkit.distributed.compression.hooks import Bf16, Fp16, PowerSGD
from advkit.distributed.compression.int8 import Int8Gather, Int8TwoSided
from advkit.distributed.compression.quantize import packed_bytes, padded_length

COMPRESSIONS: tuple[str, ...] = ("none", "fp16", "bf16", "int8", "int8-2sided", "powersgd")
#: compressions whose rounding error feedback can correct
ERROR_FEEDBACK = ("int8", "int8-2sided")


@dataclass(frozen=True)
class _Options:
    powersgd_rank: int
    error_feedback: bool
    seed: int
    rank: int
    block_size: int


def _int8(kind: type) -> Callable[[nn.Module, dist.ProcessGroup, _Options], Hook]:
    def build(module: nn.Module, group: dist.ProcessGroup, opts: _Options) -> Hook:
        return kind(
            module, group, block_size=opts.block_size, seed=opts.seed, rank=opts.rank,
            error_feedback=opts.error_feedback,
        )  # fmt: skip

    return build


#: compression -> the hook it registers, built from the wrapped module, process group, options
_HOOKS: dict[str, Callable[[nn.Module, dist.ProcessGroup, _Options], Hook]] = {
    "none": lambda module, group, opts: _AllReduce(group),
    "fp16": lambda module, group, opts: Fp16(group),
    "bf16": lambda module, group, opts: Bf16(group),
    "int8": _int8(Int8Gather),
    "int8-2sided": _int8(Int8TwoSided),
    "powersgd": lambda module, group, o: PowerSGD(group, rank=o.powersgd_rank, seed=o.seed),
}


def attach_communication(
    model: nn.Module, compression: str = "none", *, powersgd_rank: int = 1,
    error_feedback: bool = False, seed: int = 0, rank: int = 0, block_size: int = 256,
) -> Communication:  # fmt: skip
    """Register the hook for ``compression`` on ``model`` if it is a DistributedDataParallel.

    Every compression, "none" included, gets an accounting hook. On a plain module (one
    process) nothing is exchanged: the ``Communication`` returned measures zeros, and any
    compression but "none" is refused. ``rank`` and ``seed`` key the int8 hooks' stochastic
    rounding (with the iteration and the parameter: see ``int8``) and seed PowerSGD's
    projections (the same on every rank); ``block_size`` is the number of elements sharing one
    int8 scale (each parameter padded to whole blocks).
    """
    check_options(compression, powersgd_rank=powersgd_rank, error_feedback=error_feedback,
                  block_size=block_size)  # fmt: skip
    if not isinstance(model, DistributedDataParallel):
        if compression != "none":
            raise CompressionError(
                f"--grad-compression {compression} compresses the gradients workers exchange: "
                "train on several workers (--nproc 2) or drop it"
            )
        return Communication()
    group = model.process_group
    opts = _Options(powersgd_rank, error_feedback, seed, rank, block_size)
    communication = Communication(compression, _HOOKS[compression](model.module, group, opts),
                                  group.size())  # fmt: skip
    model.register_comm_hook(communication, run_hook)
    return communication


def check_options(
    compression: str, *, powersgd_rank: int = 1, error_feedback: bool = False,
    block_size: int = 256,
) -> None:  # fmt: skip
    """Refuse settings that cannot work, with what to change (callable before any worker starts)."""
    if compression not in _HOOKS:
        raise CompressionError(
            f"--grad-compression must be one of {', '.join(COMPRESSIONS)}, got {compression!r}"
        )
    if not (isinstance(powersgd_rank, int) and powersgd_rank >= 1):
        raise CompressionError(f"--powersgd-rank must be an integer >= 1, got {powersgd_rank!r}")
    if powersgd_rank != 1 and compression != "powersgd":
        raise CompressionError(
            "--powersgd-rank sets PowerSGD's rank: add --grad-compression powersgd, or drop it"
        )
    if error_feedback and compression not in ERROR_FEEDBACK:
        raise CompressionError(
            f"--error-feedback corrects int8 rounding: use it with --grad-compression "
            f"{' or '.join(ERROR_FEEDBACK)}, not {compression}"
            + (" (PowerSGD has its own, always on)" if compression == "powersgd" else "")
        )
    if not (isinstance(block_size, int) and block_size >= 1):
        raise CompressionError(f"the int8 block size must be an integer >= 1, got {block_size!r}")


def estimate_bytes(
    numel: int | Sequence[int], compression: str, world_size: int, *, block_size: int = 256
) -> tuple[float, float]:
    """(payload, wire) bytes per worker per iteration for fp32 gradients in one bucket.

    ``numel`` is the sizes of the bucket's parameters (an int: one parameter): the int8 hooks
    pad each parameter to whole blocks of ``block_size``, so their bytes depend on the sizes,
    not only on their sum. The analytic model the counters follow (per bucket; several buckets
    pad each). PowerSGD depends on the tensors' shapes: not estimated here.
    """
    check_options(compression, block_size=block_size)
    sizes = [numel] if isinstance(numel, int) else list(numel)
    size = world_size
    if compression == "powersgd":
        raise CompressionError("PowerSGD's bytes depend on the tensors' shapes: count them")
    if compression in ("none", "fp16", "bf16"):
        payload = sum(sizes) * (4 if compression == "none" else 2)
        return float(payload), WIRE_SHARE["all_reduce"](size) * payload
    length = sum(padded_length(n, block_size) for n in sizes)  # the canonical vector
    if compression == "int8":
        row = packed_bytes(length, block_size)
        return float(row), WIRE_SHARE["all_gather"](size) * row
    chunk_row = packed_bytes(padded_length(-(-length // size), block_size), block_size)
    payload = size * chunk_row + chunk_row
    wire = (WIRE_SHARE["all_to_all"](size) * size + WIRE_SHARE["all_gather"](size)) * chunk_row
    return float(payload), wire


__all__ = [
    "COMPRESSIONS",
    "ERROR_FEEDBACK",
    "Communication",
    "CompressionError",
    "attach_communication",
    "check_options",
    "estimate_bytes",
]
