"""A counter-based generator: random bits as a hash of (key, position), on any device.

``keyed_words(keys, n)`` gives each row's key ``n`` 32-bit words, ``hash(key, 0..n-1)``, with a
fixed sequence of elementwise integer kernels on the keys' device: no generator state, no
per-row loop, and no host round trip, so a row's bits depend on its key and position alone.

The hash: a position's word ``h(j)`` is precomputed once per row length (two rounds of a 32-bit
multiply-xorshift mixer, Wellons' ``lowbias32`` constants); a row's 64-bit key enters as two
32-bit halves, each followed by a full mixing round::

    x = mix(mix(h(j) ^ key_low) ^ key_high), then x ^= x >>> 16

(the last xorshift moves the top bits into bits 8-15, which a product leaves least mixed; without
it, flipping one key bit flips output bits with probability 0.5 +- 0.009, a 6-sigma bias at
130,000 pairs: tests/test_noise.py). Two rows share their words only if their 64-bit keys are
equal. The operations are int32 and in place (tensor integer multiplication wraps modulo 2**32;
the logical right shift is an arithmetic shift and a mask), about 25 elementwise kernels per
draw: on a CPU, 1.1-1.2x ``torch.rand`` for a batch of 128 MNIST images, about half for larger
batches (BENCHMARKS.md).

Keys are made on the host with splitmix64 (``mix_keys``); ``draw_keys`` remixes them for each
draw number, in numpy for a CPU draw and on the device otherwise (the same bits).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)

#: splitmix64's constants as signed int64 (tensor multiplication wraps modulo 2**64)
_GOLDEN64 = int(_GOLDEN) - 2**64
_MIX1_64 = int(_MIX1) - 2**64
_MIX2_64 = int(_MIX2) - 2**64
#: lowbias32's multipliers as signed int32
_MUL1 = 0x7FEB352D
_MUL2 = 0x846CA68B - 2**32
#: fixed keys of the position hash (any odd-looking constants; changing them changes all draws)
_POSITION_KEYS = (0x2545F491, 0x61C88647 - 2**31)


def _splitmix(values: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer (Steele et al.), vectorized: a bijective 64-bit mix."""
    with np.errstate(over="ignore"):
        z = values + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        return z ^ (z >> np.uint64(31))


def mix_keys(*parts: int | np.ndarray | Tensor) -> np.ndarray:
    """Combine integers (scalars or equal-length arrays) into well-spread uint64 keys."""
    key = np.zeros((), dtype=np.uint64)
    for part in parts:
        if isinstance(part, Tensor):
            part = part.detach().cpu().numpy()
        with np.errstate(over="ignore"):
            key = _splitmix(key ^ np.asarray(part).astype(np.uint64))
    return np.atleast_1d(key)


def _xorshift_(x: Tensor, shift: int, scratch: Tensor) -> None:
    """``x ^= x >>> shift`` in place (a logical shift: torch's ``>>`` on signed ints is not)."""
    torch.bitwise_right_shift(x, shift, out=scratch)
    scratch.bitwise_and_((1 << (x.element_size() * 8 - shift)) - 1)
    x.bitwise_xor_(scratch)


def _mix32_(x: Tensor, scratch: Tensor) -> None:
    """One multiply-xorshift round on int32 words, in place (a bijection of 32-bit words)."""
    _xorshift_(x, 16, scratch)
    x.mul_(_MUL1)
    _xorshift_(x, 15, scratch)
    x.mul_(_MUL2)


def _splitmix_tensor(z: Tensor) -> Tensor:
    """splitmix64 on an int64 tensor, as ``_splitmix`` on uint64 arrays (bit for bit)."""
    z = z + _GOLDEN64
    scratch = torch.empty_like(z)
    _xorshift_(z, 30, scratch)
    z.mul_(_MIX1_64)
    _xorshift_(z, 27, scratch)
    z.mul_(_MIX2_64)
    _xorshift_(z, 31, scratch)
    return z


def premix_keys(keys: np.ndarray) -> np.ndarray:
    """uint64 keys, mixed once more, as int64: what ``draw_keys`` and ``row_keys`` start from."""
    return _splitmix(np.asarray(keys, dtype=np.uint64).reshape(-1)).view(np.int64)


def row_keys(keys: np.ndarray, device: torch.device) -> Tensor:
    """uint64 keys as premixed int64 keys on ``device``, to hash directly: one copy."""
    return torch.from_numpy(premix_keys(keys)).to(device, non_blocking=True)


def draw_keys(keys: np.ndarray | Tensor, draw: int) -> np.ndarray | Tensor:
    """The int64 keys of draw number ``draw`` from premixed keys: computed in numpy for an array,
    on the tensor's device for a tensor, the same bits either way."""
    if isinstance(keys, Tensor):
        return _splitmix_tensor(keys ^ draw)
    return _splitmix(keys.view(np.uint64) ^ np.uint64(draw)).view(np.int64)


@lru_cache(maxsize=32)
def _position_words(n: int, device: torch.device) -> Tensor:
    """``h(j)`` for positions ``0..n-1``: int32 words, well mixed, cached per length and device."""
    x = torch.arange(n, dtype=torch.int32, device=device)
    scratch = torch.empty_like(x)
    for key in _POSITION_KEYS:
        x.bitwise_xor_(key)
        _mix32_(x, scratch)
    _xorshift_(x, 16, scratch)
    return x


def keyed_words(keys: Tensor, n: int) -> Tensor:
    """``(N, n)`` int32 random words, row ``i`` a function of ``keys[i]`` (int64) alone."""
    return _hash(_position_words(n, keys.device), keys.unsqueeze(1))


def segment_words(keys: Tensor, segments: Sequence[tuple[int, int]], length: int) -> Tensor:
    """``(length,)`` int32 words: ``out[start:stop]`` is ``keyed_words(keys[s:s+1], stop -
    start)`` for segment ``s``, zeros after the last segment. One kernel sequence for all
    segments (the layout's indices are cached), where a loop would launch one per segment."""
    index, positions = _segment_layout(tuple(segments), keys.device)
    out = torch.zeros(length, dtype=torch.int32, device=keys.device)
    if len(index):
        out[: len(index)] = _hash(positions, keys[index])
    return out


@lru_cache(maxsize=8)
def _segment_layout(
    segments: tuple[tuple[int, int], ...], device: torch.device
) -> tuple[Tensor, Tensor]:
    """Each element's segment and its position word, for contiguous segments from 0."""
    lengths = [stop - start for start, stop in segments]
    starts = [start for start, _ in segments]
    if starts != [0, *[stop for _, stop in segments[:-1]]] or min(lengths, default=1) < 1:
        raise ValueError(f"segments must be contiguous and non-empty from 0, got {segments}")
    total = sum(lengths)
    index = torch.repeat_interleave(
        torch.arange(len(segments), device=device), torch.tensor(lengths, device=device)
    )
    local = torch.arange(total, device=device) - torch.tensor(starts, device=device)[index]
    return index, _position_words(max(lengths, default=0), device)[local]


_SCRATCH = threading.local()


def _scratch_like(words: Tensor) -> Tensor:
    """An int32 work buffer of ``words``' shape. On the CPU one buffer per thread is kept and
    reused: a fresh one costs a page fault per 4 KiB at its first write, which for a CIFAR
    batch is more than the hash itself. Elsewhere the caching allocator already reuses memory."""
    if words.device.type != "cpu":
        return torch.empty_like(words)
    buffer = getattr(_SCRATCH, "buffer", None)
    if buffer is None or buffer.numel() < words.numel():
        buffer = _SCRATCH.buffer = torch.empty(words.numel(), dtype=torch.int32)
    return buffer[: words.numel()].view(words.shape)


def _hash(positions: Tensor, keys: Tensor) -> Tensor:
    """``mix(mix(positions ^ low(keys)) ^ high(keys))``, then ``x ^= x >>> 16``, broadcast."""
    low = keys.to(torch.int32)  # the low 32 bits (the conversion wraps)
    high = keys.bitwise_right_shift(32).to(torch.int32)
    words = torch.bitwise_xor(positions, low)
    scratch = _scratch_like(words)
    _mix32_(words, scratch)
    words.bitwise_xor_(high)
    _mix32_(words, scratch)
    _xorshift_(words, 16, scratch)
    return words


def unit_floats(words: Tensor, dtype: torch.dtype, *, low: Tensor | None = None) -> Tensor:
    """Floats uniform in [0, 1) of ``dtype`` from int32 ``words`` (consumed: used as scratch).

    The top ``p`` bits of each word (``p`` = the dtype's precision, at most 24), as a multiple of
    ``2**-p``: exact in the dtype, so never rounded up to 1. float64 takes 53 bits, 27 from
    ``words`` and 26 from ``low``, as numpy's doubles.
    """
    if dtype == torch.float64:
        if low is None:
            raise ValueError("float64 draws take two words per element (pass low=)")
        high_bits = _top_bits(words, 27).to(torch.float64)
        low_bits = _top_bits(low, 26).to(torch.float64)
        return high_bits.mul_(2.0**26).add_(low_bits).mul_(2.0**-53)
    if not dtype.is_floating_point:
        raise ValueError(f"uniform draws are floating point, not {dtype}")
    bits = min(1 - round(math.log2(torch.finfo(dtype).eps)), 24)
    # No shift (a slow kernel on CPUs): the signed word with its low bits cleared is a float32
    # exactly; scaled by 2**-32 it lies in [-1/2, 1/2) on a 2**-bits grid, and + 1/2 is exact.
    words.bitwise_and_(-(1 << (32 - bits)))
    out = words.view(torch.float32)
    out.copy_(words)  # converted in place (a full overlap, element by element)
    out.mul_(2.0**-32).add_(0.5)
    return out if dtype == torch.float32 else out.to(dtype)


def _top_bits(words: Tensor, bits: int) -> Tensor:
    """The top ``bits`` bits of int32 words as non-negative ints, in place."""
    return words.bitwise_right_shift_(32 - bits).bitwise_and_((1 << bits) - 1)


__all__ = [
    "draw_keys",
    "keyed_words",
    "mix_keys",
    "premix_keys",
    "row_keys",
    "segment_words",
    "unit_floats",
]
