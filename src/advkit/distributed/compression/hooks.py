"""The float hooks (fp32, fp16, bf16) and torch's PowerSGD, each reporting what it sends.

A hook here is a callable ``bucket -> (future, sends)``: the future DDP waits on, and the list of
``(collective, payload bytes)`` it handed to torch.distributed for that bucket, which
``Communication`` turns into payload and wire bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.distributed.algorithms.ddp_comm_hooks.powerSGD_hook import PowerSGDState, powerSGD_hook
from torch.futures import Future

Send = tuple[str, int]
#: PowerSGD runs plain all-reduces before this iteration: DDP rebuilds its buckets after the
#: first, and torch refuses anything below 2 with error feedback or warm start.
POWERSGD_START_ITER = 2


class _Stateless:
    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class AllReduce(_Stateless):
    """fp32 all-reduce of the gradients divided by W: DDP's own reduction, to the bit."""

    def __init__(self, group: dist.ProcessGroup) -> None:
        self.group = group

    def __call__(self, bucket: dist.GradBucket) -> tuple[Future[Tensor], list[Send]]:
        buffer = bucket.buffer()
        # DDP without a hook scales by 1/W while copying into the bucket, then sums: the same.
        buffer.mul_(1.0 / self.group.size())
        fut = dist.all_reduce(buffer, group=self.group, async_op=True).get_future()
        sends = [("all_reduce", buffer.numel() * buffer.element_size())]
        return fut.then(lambda f: f.value()[0]), sends


class Fp16(_Stateless):
    """torch's ``fp16_compress_hook``: divide by W, cast to fp16, all-reduce, cast back."""

    def __init__(self, group: dist.ProcessGroup) -> None:
        self.group = group

    def __call__(self, bucket: dist.GradBucket) -> tuple[Future[Tensor], list[Send]]:
        numel = bucket.buffer().numel()
        return default_hooks.fp16_compress_hook(self.group, bucket), [("all_reduce", 2 * numel)]


class Bf16(_Stateless):
    """Cast to bf16, all-reduce, cast back, divide by W.

    Our own: torch's ``bf16_compress_hook`` is refused by name on anything but CUDA/NCCL,
    although gloo reduces bf16. bf16 keeps fp32's range, so the division waits for fp32.
    """

    def __init__(self, group: dist.ProcessGroup) -> None:
        self.group = group

    def __call__(self, bucket: dist.GradBucket) -> tuple[Future[Tensor], list[Send]]:
        buffer = bucket.buffer()
        compressed = buffer.to(torch.bfloat16)
        fut = dist.all_reduce(compressed, group=self.group, async_op=True).get_future()

        def decompress(f: Future) -> Tensor:
            f.value()
            return buffer.copy_(compressed).div_(self.group.size())

        return fut.then(decompress), [("all_reduce", 2 * compressed.numel())]


#: PowerSGDState's fields a resumed run needs (its process group and RNG are handled apart).
_POWERSGD_FIELDS = (
    "iter", "error_dict", "p_memory_dict", "q_memory_dict", "total_numel_before_compression",
    "total_numel_after_compression", "next_stats_report",
)  # fmt: skip


class PowerSGD:
    """torch's ``powerSGD_hook`` (Vogels et al., NeurIPS 2019, arXiv:1905.13727), accounted.

    Plain all-reduces until iteration ``POWERSGD_START_ITER``; then per bucket, three
    all-reduces: the tensors not worth compressing (1-d ones among them) as they are, then P and
    Q of the others. The elements sent are read from torch's own statistics
    (``total_numel_after_compression`` grows by exactly what this bucket sends), not re-derived.

    On gloo each bucket's exchange is finished before the hook returns: torch's hook starts its
    P and Q all-reduces from the previous collective's callback, on a communication thread,
    and with several buckets that races the next bucket's all-reduce (the workers deadlock,
    measured on torch 2.13 with two buckets). Buckets then no longer overlap each other.
    """

    def __init__(self, group: dist.ProcessGroup, *, rank: int, seed: int) -> None:
        self.state = PowerSGDState(
            process_group=group, matrix_approximation_rank=rank,
            start_powerSGD_iter=POWERSGD_START_ITER, use_error_feedback=True, warm_start=True,
            random_seed=seed,
        )  # fmt: skip
        self._serial = dist.get_backend(group) == "gloo"

    def __call__(self, bucket: dist.GradBucket) -> tuple[Future[Tensor], list[Send]]:
        state, buffer = self.state, bucket.buffer()
        plain = state.iter < state.start_powerSGD_iter
        before = state.total_numel_after_compression
        fut = powerSGD_hook(state, bucket)
        if self._serial:
            fut.wait()
        numel = buffer.numel() if plain else state.total_numel_after_compression - before
        return fut, [("all_reduce", numel * buffer.element_size())]

    def state_dict(self) -> dict[str, Any]:
        """Plain data (loadable with ``weights_only=True``): no process group, no numpy."""
        _, keys, pos, has_gauss, cached = self.state.rng.get_state()
        fields = {name: _copied(getattr(self.state, name)) for name in _POWERSGD_FIELDS}
        rng = {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
               "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}  # fmt: skip
        return fields | {"rng": rng}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in _POWERSGD_FIELDS:
            value = state[name]
            if isinstance(value, dict):
                value = {int(k): v for k, v in value.items()}
            setattr(self.state, name, value)
        rng = state["rng"]
        self.state.rng.set_state((
            "MT19937", rng["keys"].numpy().astype(np.uint32), rng["pos"], rng["has_gauss"],
            rng["cached_gaussian"],
        ))  # fmt: skip


def _copied(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: v.clone() for k, v in value.items()}
    return value
