"""The int8 hooks: DAT's one-sided all_gather scheme and the two-sided all_to_all scheme.

Both quantize a bucket with per-block absmax scales and stochastic rounding (``quantize``), so
the averaged gradient is unbiased; both may carry error feedback.

- ``int8`` (one-sided, what DAT's code does): every worker all_gathers every worker's codes and
  scales, decodes them and averages. Each worker sends (W-1) times its n bytes: fewer bytes than
  an fp32 all-reduce (2(W-1)/W * 4n) only while W < 8.
- ``int8-2sided``: the bucket's canonical vector (below) is cut into W chunks; an all_to_all
  hands chunk j of every worker to worker j, which decodes and averages it, requantizes the
  average and all_gathers it. About 2(W-1)/W * n bytes per worker at any W. Gloo (torch 2.13)
  runs ``all_to_all_single`` and ``all_gather_single`` (into a flat tensor; it refuses a 2-d
  output). The hook waits for its all_to_all before it requantizes: a second collective started
  from the first one's callback would run on a communication thread, and its order against the
  next bucket's collectives could then differ between workers, which pairs unrelated messages.

What is rounded does not depend on DDP's bucket layout. DDP rebuilds its buckets after the first
iteration (in the order gradients became ready), and a resumed process starts again from the
first layout, so a layout-dependent quantizer would round a resumed run differently. A bucket
is therefore quantized in its canonical order: its parameters in model order
(``model.parameters()``), each padded with zeros to whole blocks, so a parameter's blocks and
scales never mix with its neighbours'; the buffer is read through a permutation cached per
layout (one scatter in, one gather out; a plain copy when the layout already is canonical). The
rounding draws are keyed per parameter by (seed, rank, iteration, parameter position), not
drawn from a running stream, and a worker's error-feedback residual is kept per parameter, in
a model-wide vector. For the one-sided scheme a parameter's codes then depend on nothing but
its own gradient, residual and key, whatever bucket carries it.

The two-sided scheme's second stage still depends on which parameters share a bucket: the
chunks, hence which worker requantizes which block and keeps its residual, are cut from the
bucket's canonical vector, and the requantization's draws are keyed by the bucket's first
parameter. Its resume is exact when DDP's rebuild leaves each bucket's parameter set as it was
(any model in one bucket); otherwise an owner's chunk residual starts again from zero.

Error feedback (``error_feedback=True``): each worker adds to its gradient what its own codes
lost last time (the residual ``sent - decoded``), so the sum of what it sends tracks the sum of
its gradients (Karimireddy et al., ICML 2019, arXiv:1901.09847). The two-sided scheme also keeps
the residual of the requantized average on the chunk's owner (DoubleSqueeze, Tang et al., ICML
2019, arXiv:1905.05957).
"""

from __future__ import annotations

from itertools import accumulate
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.futures import Future

from advkit.distributed.compression.communication import CompressionError
from advkit.distributed.compression.quantize import (
    dequantize,
    pack,
    padded_length,
    quantize,
    rounding_keys,
    rounding_noise,
    unpack,
)

Send = tuple[str, int]
#: torch 2.13 names it all_gather_single; older releases all_gather_into_tensor (now deprecated).
_all_gather_flat = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
#: the rounding stages of one iteration, keyed apart
_OWN, _REQUANTIZE = 0, 1


class _Canonical:
    """The model's parameters in model order, each padded to whole blocks: their positions,
    sizes and offsets in the model-wide padded vector (where worker residuals live)."""

    def __init__(self, model: nn.Module, block_size: int) -> None:
        parameters = list(model.parameters())
        self.position = {id(p): i for i, p in enumerate(parameters)}
        self.numel = [p.numel() for p in parameters]
        self.padded = [padded_length(n, block_size) for n in self.numel]
        self.offset = list(accumulate(self.padded, initial=0))
        self.length = self.offset[-1]

    def order(self, bucket: dist.GradBucket) -> tuple[int, ...]:
        """The model positions of a bucket's parameters, in the bucket's order."""
        return tuple(self.position[id(p)] for p in bucket.parameters())


def _ranges(starts: list[int], sizes: list[int], device: torch.device) -> Tensor:
    """``start, start+1, ..., start+size-1`` for each pair, concatenated (int64)."""
    return torch.cat(
        [torch.arange(a, a + n, device=device) for a, n in zip(starts, sizes, strict=True)]
    )


class _Layout:
    """One bucket layout's map between DDP's flat buffer (bucket order) and the bucket's
    canonical vector (its parameters in model order, each padded to whole blocks)."""

    def __init__(self, canonical: _Canonical, order: tuple[int, ...], device: torch.device):
        #: the bucket's parameters in model order
        self.positions = tuple(sorted(order))
        padded = [canonical.padded[p] for p in self.positions]
        offsets = list(accumulate(padded, initial=0))[:-1]
        start = dict(zip(self.positions, offsets, strict=True))
        #: (start, stop) of each parameter's padded segment in the canonical vector
        self.segments = [(start[p], start[p] + canonical.padded[p]) for p in self.positions]
        self.length = sum(padded)
        self.numel = sum(canonical.numel[p] for p in order)
        #: buffer element -> its slot in the canonical vector (None: the same index)
        self.slot: Tensor | None = None
        if order != self.positions or self.numel != self.length:
            sizes = [canonical.numel[p] for p in order]
            self.slot = _ranges([start[p] for p in order], sizes, device)
        #: canonical vector -> the model-wide padded vector: a slice when the positions follow
        #: each other (as in DDP's buckets), else an index
        first = self.positions[0]
        begin = canonical.offset[first]
        self.model_slots: slice | Tensor = slice(begin, begin + self.length)
        if self.positions != tuple(range(first, first + len(self.positions))):
            begins = [canonical.offset[p] for p in self.positions]
            self.model_slots = _ranges(begins, padded, device)

    def read(self, buffer: Tensor, length: int) -> Tensor:
        """An fp32 copy of ``buffer`` in canonical order, followed by zeros up to ``length``."""
        values = torch.zeros(length, dtype=torch.float32, device=buffer.device)
        if self.slot is None:
            values[: self.numel] = buffer
        else:
            values.index_copy_(0, self.slot, buffer.to(torch.float32))
        return values

    def write(self, values: Tensor, buffer: Tensor) -> Tensor:
        """Copy canonical ``values`` (any padding after ``length`` ignored) into ``buffer``."""
        if self.slot is None:
            return buffer.copy_(values[: self.numel])
        return buffer.copy_(values.index_select(0, self.slot))


class _Residuals:
    """A worker's error-feedback residuals in the model-wide padded vector: each parameter's in
    its own slots, so it follows the parameter into whichever bucket carries it."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.values: Tensor | None = None  # allocated on the gradients' device at first use

    def _on(self, device: torch.device) -> Tensor:
        if self.values is None:
            self.values = torch.zeros(self.length, device=device)
        self.values = self.values.to(device)  # a no-op unless loaded elsewhere
        return self.values

    def take(self, layout: _Layout, device: torch.device) -> Tensor:
        """The residual of a bucket's parameters, in its canonical order."""
        values = self._on(device)
        if isinstance(layout.model_slots, slice):
            return values[layout.model_slots]
        return values.index_select(0, layout.model_slots)

    def put(self, layout: _Layout, lost: Tensor) -> None:
        """Keep ``lost`` (canonical order) as the residual of the bucket's parameters."""
        values = self._on(lost.device)
        if isinstance(layout.model_slots, slice):
            values[layout.model_slots] = lost
        else:
            values.index_copy_(0, layout.model_slots, lost)


class _Int8:
    """What both int8 hooks share: the process group, the canonical layouts, the keyed
    rounding draws (an iteration counter), the residuals."""

    def __init__(
        self, model: nn.Module, group: dist.ProcessGroup, *, block_size: int, seed: int, rank: int,
        error_feedback: bool,
    ) -> None:  # fmt: skip
        self.group = group
        self.world_size = group.size()
        self.block_size = block_size
        self.seed, self.rank = seed, rank
        self.canonical = _Canonical(model, block_size)
        #: iterations completed: part of every rounding key
        self.iteration = 0
        self.worker = _Residuals(self.canonical.length) if error_feedback else None
        #: two-sided only: bucket's positions -> residual of this worker's requantized chunk
        self.owner: dict[tuple[int, ...], Tensor] = {}
        self._layouts: dict[tuple[int, ...], _Layout] = {}
        self._seen: set[tuple[int, ...]] = set()

    def _layout(self, bucket: dist.GradBucket) -> _Layout:
        order = self.canonical.order(bucket)
        self._seen.add(order)
        if order not in self._layouts:
            self._layouts[order] = _Layout(self.canonical, order, bucket.buffer().device)
        return self._layouts[order]

    def _noise(
        self, length: int, segments: list[tuple[int, int]], keys: tuple[int, ...], stage: int,
        device: torch.device,
    ) -> Tensor:  # fmt: skip
        """U[0, 1) draws of ``length``: each segment keyed by its key, zeros after the last."""
        keys = rounding_keys(self.seed, self.rank, self.iteration, stage, keys)
        return rounding_noise(keys, segments, length, device)

    def _encode_own(self, layout: _Layout, buffer: Tensor, length: int) -> tuple[Tensor, Tensor]:
        """Codes and scales of this worker's gradient plus its residual, in canonical order,
        padded with zeros to ``length``."""
        values = layout.read(buffer, length)
        n = layout.length
        if self.worker is not None:
            values[:n] += self.worker.take(layout, values.device)
        noise = self._noise(length, layout.segments, layout.positions, _OWN, values.device)
        codes, scales = quantize(values, self.block_size, noise)
        if self.worker is not None:
            decoded = dequantize(codes[:n], scales[: n // self.block_size], self.block_size)
            self.worker.put(layout, values[:n] - decoded)
        return codes, scales

    def _finish(self, bucket: dist.GradBucket) -> None:
        """After an iteration's last bucket: count it, and forget the layouts and owner
        residuals of buckets that no longer exist."""
        if not bucket.is_last():
            return
        self.iteration += 1
        self._layouts = {order: self._layouts[order] for order in self._seen}
        alive = {layout.positions for layout in self._layouts.values()}
        self.owner = {key: r for key, r in self.owner.items() if key in alive}
        self._seen = set()

    def state_dict(self) -> dict[str, Any]:
        """Plain data (``weights_only`` loads it): the iteration counter keys every draw."""
        worker = self.worker.values if self.worker is not None else None
        return {
            "iteration": self.iteration,
            "worker": worker.clone() if worker is not None else None,
            "owner": [{"positions": list(k), "residual": r.clone()} for k, r in self.owner.items()],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "iteration" not in state:
            raise CompressionError(
                "this checkpoint's int8 state comes from an older advkit, whose rounding followed "
                "DDP's bucket order and cannot be continued exactly: start the run again"
            )
        self.iteration = int(state["iteration"])
        if self.worker is not None:  # copies: the residual is then updated in place
            worker = state["worker"]
            self.worker.values = worker.clone() if worker is not None else None
            self.owner = {tuple(e["positions"]): e["residual"].clone() for e in state["owner"]}


class Int8Gather(_Int8):
    """One-sided: all_gather of every worker's codes and scales, decoded and averaged."""

    def __call__(self, bucket: dist.GradBucket) -> tuple[Future[Tensor], list[Send]]:
        buffer, size, block = bucket.buffer(), self.world_size, self.block_size
        layout = self._layout(bucket)
        codes, scales = self._encode_own(layout, buffer, layout.length)
        self._finish(bucket)
        row = pack(codes, scales)
        gathered = row.new_empty(size * row.numel())
        work = _all_gather_flat(gathered, row, group=self.group, async_op=True)

        def decode(fut: Future) -> Tensor:
            fut.value()  # raises what the collective raised
            all_codes, all_scales = unpack(gathered.view(size, -1), codes.numel())
            mean = dequantize(all_codes, all_scales, block).sum(0).div_(size)
            return layout.write(mean, buffer)

        return work.get_future().then(decode), [("all_gather", row.numel())]


class Int8TwoSided(_Int8):
    """Two-sided: all_to_all of int8 chunks, each owner averages and requantizes, all_gather."""

    def __call__(self, bucket: dist.GradBucket) -> tuple[Future[Tensor], list[Send]]:
        buffer, size, block = bucket.buffer(), self.world_size, self.block_size
        layout = self._layout(bucket)
        chunk = padded_length(-(-layout.length // size), block)
        codes, scales = self._encode_own(layout, buffer, size * chunk)
        sent = pack(codes.view(size, chunk), scales.view(size, -1))
        received = torch.empty_like(sent)
        dist.all_to_all_single(received, sent, group=self.group)  # waits: see the module doc
        mean = dequantize(*unpack(received, chunk), block).sum(0).div_(size)
        if self.worker is not None and layout.positions in self.owner:
            mean += self.owner[layout.positions].to(mean.device)
        keys = layout.positions[:1]
        noise = self._noise(chunk, [(0, chunk)], keys, _REQUANTIZE, mean.device)
        mean_codes, mean_scales = quantize(mean, block, noise)
        if self.worker is not None:
            self.owner[layout.positions] = mean - dequantize(mean_codes, mean_scales, block)
        self._finish(bucket)
        row = pack(mean_codes, mean_scales)
        gathered = row.new_empty(size * row.numel())
        work = _all_gather_flat(gathered, row, group=self.group, async_op=True)

        def decode(fut: Future) -> Tensor:
            fut.value()
            chunks = dequantize(*unpack(gathered.view(size, -1), chunk), block)
            return layout.write(chunks.view(-1), buffer)

        sends = [("all_to_all", sent.numel()), ("all_gather", row.numel())]
        return work.get_future().then(decode), sends
