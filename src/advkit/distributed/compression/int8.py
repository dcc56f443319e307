"""The int8 hooks: DAT's one-sided all_gather scheme and the two-sided all_to_all scheme.

Both quantize a bucket with per-block absmax scales and stochastic rounding (``quantize``), so
the averaged gradient is unbiased; both may carry error feedback.

- ``int8`` (one-sided, what DAT's code does): every worker all_gathers every worker's codes and
  scales, decodes them and averages. Each worker sends (W-1) times its n bytes: fewer bytes than
  an fp32 all-reduce (2(W-1)/W * 4n) only while W < 8.
- ``int8-2sided``: the padded bucket is cut into W chunks; an all_to_all hands chunk j of every
  worker to worker j, which decodes and averages it, requantizes the average and all_gathers it.
  About 2(W-1)/W * n bytes per worker at any W. Gloo (torch 2.13) runs ``all_to_all_single``
  and ``all_gather_single`` (into a flat tensor; it refuses a 2-d output). The hook waits for its
  all_to_all before it requantizes: a second collective started from the first one's callback
  would run on a communication thread, and its order against the next bucket's collectives
  could then differ between workers, which pairs unrelated messages.

Error feedback (``error_feedback=True``): each worker adds to its gradient what its own codes
lost last time (the residual ``sent - decoded``), so the sum of what it sends tracks the sum of
its gradients (Karimireddy et al., ICML 2019, arXiv:1901.09847). The two-sided scheme also keeps
the residual of the requantized average on the chunk's owner (DoubleSqueeze, Tang et al., ICML
2019, arXiv:1905.05957). DDP rebuilds its buckets after the first iteration (and a resumed
process starts from the first layout again), so a worker residual is stored with the bucket's
parameter order and moved parameter by parameter when a bucket's layout changes; an owner's
chunk residual starts again from zero then.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.futures import Future

from advkit.distributed.compression.quantize import (
    dequantize,
    make_generator,
    pack,
    padded_length,
    quantize,
    unpack,
)

Send = tuple[str, int]
#: torch 2.13 names it all_gather_single; older releases all_gather_into_tensor (now deprecated).
_all_gather_flat = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor


def _padded(buffer: Tensor, length: int) -> Tensor:
    """An fp32 copy of the flat ``buffer`` followed by zeros up to ``length``."""
    values = torch.zeros(length, dtype=torch.float32, device=buffer.device)
    values[: buffer.numel()] = buffer
    return values


class _Residuals:
    """A worker's error-feedback residuals, one per bucket, with the bucket's parameter order."""

    def __init__(self, model: nn.Module) -> None:
        parameters = list(model.parameters())
        self._position = {id(p): i for i, p in enumerate(parameters)}
        self._numel = [p.numel() for p in parameters]
        #: bucket index -> (positions of its parameters in model order, residual)
        self.stored: dict[int, tuple[tuple[int, ...], Tensor]] = {}
        #: parameter position -> its residual, while buckets change layout (one iteration)
        self._pieces: dict[int, Tensor] = {}

    def layout(self, bucket: dist.GradBucket) -> tuple[int, ...]:
        return tuple(self._position[id(p)] for p in bucket.parameters())

    def get(self, index: int, layout: tuple[int, ...], numel: int) -> Tensor | None:
        """The residual of bucket ``index`` in ``layout``, moved from other layouts if needed."""
        entry = self.stored.get(index)
        if entry is not None and entry[0] == layout and entry[1].numel() == numel:
            return entry[1]
        if not self._pieces:  # a new layout: take every stored residual apart, once
            for old_layout, residual in self.stored.values():
                sizes = [self._numel[p] for p in old_layout]
                if sum(sizes) == residual.numel():  # else not parameter after parameter: dropped
                    self._pieces.update(zip(old_layout, residual.split(sizes), strict=True))
            self.stored.clear()
        if not any(p in self._pieces for p in layout) or numel != sum(
            self._numel[p] for p in layout
        ):
            return None
        device = next(iter(self._pieces.values())).device
        return torch.cat([
            self._pieces.get(p, torch.zeros(self._numel[p], device=device)) for p in layout
        ])  # fmt: skip

    def end_iteration(self, seen: set[int]) -> None:
        self._pieces = {}
        for index in set(self.stored) - seen:
            del self.stored[index]


def _saved(stored: dict[int, tuple[tuple[int, ...], Tensor]]) -> dict[int, dict[str, Any]]:
    """Residuals with their layouts as plain data (``weights_only`` loads it)."""
    return {i: {"layout": list(layout), "residual": r.clone()} for i, (layout, r) in stored.items()}


def _loaded(state: dict[int, dict[str, Any]]) -> dict[int, tuple[tuple[int, ...], Tensor]]:
    return {int(i): (tuple(e["layout"]), e["residual"]) for i, e in state.items()}


class _Int8:
    """What both int8 hooks share: the process group, the rounding generator, residuals."""

    def __init__(
        self, model: nn.Module, group: dist.ProcessGroup, *, block_size: int, seed: int, rank: int,
        error_feedback: bool,
    ) -> None:  # fmt: skip
        self.group = group
        self.world_size = group.size()
        self.block_size = block_size
        self.generator = make_generator(seed, rank, next(model.parameters()).device)
        self.worker = _Residuals(model) if error_feedback else None
        #: two-sided only: bucket index -> (layout, residual of this worker's requantized chunk)
        self.owner: dict[int, tuple[tuple[int, ...], Tensor]] = {}
        self._seen: set[int] = set()

    def _encode_own(
        self, bucket: dist.GradBucket, length: int
    ) -> tuple[Tensor, Tensor, tuple[int, ...]]:
        """Codes and scales of this worker's gradient plus its residual, padded to ``length``,
        and the bucket's layout (empty without error feedback)."""
        buffer = bucket.buffer()
        n, index = buffer.numel(), bucket.index()
        values = _padded(buffer, length)
        layout: tuple[int, ...] = ()
        if self.worker is not None:
            layout = self.worker.layout(bucket)
            residual = self.worker.get(index, layout, n)
            if residual is not None:
                values[:n] += residual
        codes, scales = quantize(values, self.block_size, self.generator)
        if self.worker is not None:
            lost = values[:n] - dequantize(codes, scales, self.block_size)[:n]
            self.worker.stored[index] = (layout, lost)
            self._forget_stale(bucket)
        return codes, scales, layout

    def _forget_stale(self, bucket: dist.GradBucket) -> None:
        """At an iteration's last bucket, drop residuals of buckets that no longer exist."""
        self._seen.add(bucket.index())
        if bucket.is_last() and self.worker is not None:
            self.worker.end_iteration(self._seen)
            for index in set(self.owner) - self._seen:
                del self.owner[index]
            self._seen.clear()

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.get_state(),
            "worker": _saved(self.worker.stored) if self.worker is not None else {},
            "owner": _saved(self.owner),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        if self.worker is not None:
            self.worker.stored = _loaded(state["worker"])
            self.owner = _loaded(state["owner"])


class Int8Gather(_Int8):
    """One-sided: all_gather of every worker's codes and scales, decoded and averaged."""

    def __call__(self, bucket: dist.GradBucket) -> tuple[Future[Tensor], list[Send]]:
        buffer, size, block = bucket.buffer(), self.world_size, self.block_size
        n = buffer.numel()
        codes, scales, _ = self._encode_own(bucket, padded_length(n, block))
        row = pack(codes, scales)
        gathered = row.new_empty(size * row.numel())
        work = _all_gather_flat(gathered, row, group=self.group, async_op=True)

        def decode(fut: Future) -> Tensor:
            fut.value()  # raises what the collective raised
            all_codes, all_scales = unpack(gathered.view(size, -1), codes.numel())
            mean = dequantize(all_codes, all_scales, block).sum(0)[:n].div_(size)
            return buffer.copy_(mean)

        return work.get_future().then(decode), [("all_gather", row.numel())]


class Int8TwoSided(_Int8):
    """Two-sided: all_to_all of int8 chunks, each owner averages and requantizes, all_gather."""

    def __call__(self, bucket: dist.GradBucket) -> tuple[Future[Tensor], list[Send]]:
        buffer, size, block = bucket.buffer(), self.world_size, self.block_size
        n = buffer.numel()
        chunk = padded_length(-(-n // size), block)
        codes, scales, layout = self._encode_own(bucket, size * chunk)
        sent = pack(codes.view(size, chunk), scales.view(size, -1))
        received = torch.empty_like(sent)
        dist.all_to_all_single(received, sent, group=self.group)  # waits: see the module doc
        mean = dequantize(*unpack(received, chunk), block).sum(0).div_(size)
        if self.worker is not None:
            entry = self.owner.get(bucket.index())
            if entry is not None and entry[0] == layout and entry[1].numel() == chunk:
                mean += entry[1]
        mean_codes, mean_scales = quantize(mean, block, self.generator)
        if self.worker is not None:
            lost = mean - dequantize(mean_codes, mean_scales, block)
            self.owner[bucket.index()] = (layout, lost)
        row = pack(mean_codes, mean_scales)
        gathered = row.new_empty(size * row.numel())
        work = _all_gather_flat(gathered, row, group=self.group, async_op=True)

        def decode(fut: Future) -> Tensor:
            fut.value()
            chunks = dequantize(*unpack(gathered.view(size, -1), chunk), block)
            return buffer.copy_(chunks.view(-1)[:n])

        sends = [("all_to_all", sent.numel()), ("all_gather", row.numel())]
        return work.get_future().then(decode), sends
