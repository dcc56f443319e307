"""Per-block absmax int8 codes with stochastic rounding: what the int8 hooks send.

A flat vector is cut into blocks of ``block_size`` elements; each block keeps its absmax as an
fp32 scale and each element becomes the integer level ``floor(x / absmax * 127 + u)``, ``u``
uniform in [0, 1): a level in -127..127 whose expectation is ``x / absmax * 127``, so the decoded
value ``level * absmax / 127`` is unbiased and within ``absmax / 127`` of ``x``. Per-block scales
keep the levels used on large tensors (one norm for a whole tensor, as in QSGD, leaves nearly
every element at level 0). Decoding is plain float arithmetic on the signed codes (DAT's released
decoder divides a uint8 by 2 with true division, which biases every value).

The draws ``u`` are keyed, never a running stream: ``rounding_noise`` hashes each segment's (a
parameter's) key from ``rounding_keys(seed, rank, iteration, stage, keys)`` with its positions
(:mod:`advkit.keyed_bits`, all segments in one kernel sequence), so a parameter's draws depend on
nothing but who rounds it, when, and which parameter it is.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from advkit.keyed_bits import mix_keys, row_keys, segment_words, unit_floats

#: The largest level; codes are int8 in -LEVELS..LEVELS (-128 is never used: symmetric levels).
LEVELS = 127
#: bytes of one fp32 scale
SCALE_BYTES = 4


def padded_length(n: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that holds ``n`` elements."""
    return -(-n // multiple) * multiple


def rounding_keys(
    seed: int, rank: int, iteration: int, stage: int, keys: Sequence[int]
) -> np.ndarray:
    """One uint64 key per parameter position ``keys`` for the draws of worker ``rank`` at
    ``iteration``; ``stage`` separates independent roundings of one iteration."""
    return mix_keys(seed, rank, iteration, stage, np.asarray(keys, dtype=np.uint64))


def rounding_noise(
    keys: np.ndarray, segments: Sequence[tuple[int, int]], length: int, device: torch.device
) -> Tensor:
    """U[0, 1) draws ``(length,)``: ``[start:stop)`` of each segment keyed by its key alone,
    zeros after the last segment."""
    words = segment_words(row_keys(keys, device), segments, length)
    used = segments[-1][1] if segments else 0
    out = unit_floats(words, torch.float32)
    out[used:] = 0.0
    return out


def quantize(values: Tensor, block_size: int, noise: Tensor) -> tuple[Tensor, Tensor]:
    """int8 codes ``(m,)`` and fp32 block scales ``(m / block_size,)`` of a flat ``(m,)`` vector.

    ``noise`` holds the ``m`` uniform draws in [0, 1) of the rounding. ``m`` must be a multiple
    of ``block_size`` (pad with zeros first: a zero pads nothing into a block's absmax, and is
    sent as code 0 whatever its draw). A block of zeros gets scale 0 and codes 0.
    """
    blocks = values.view(-1, block_size).float()
    scales = blocks.abs().amax(dim=1)
    safe = torch.where(scales > 0, scales, torch.ones_like(scales))
    levels = blocks / safe.unsqueeze(1) * LEVELS
    codes = levels.add_(noise.view_as(levels)).floor_().clamp_(-LEVELS, LEVELS).to(torch.int8)
    return codes.view(-1), scales


def dequantize(codes: Tensor, scales: Tensor, block_size: int) -> Tensor:
    """fp32 values ``(..., m)`` of int8 ``codes (..., m)`` and ``scales (..., m / block)``."""
    blocks = codes.unflatten(-1, (-1, block_size)).float()
    return (blocks * (scales / LEVELS).unsqueeze(-1)).flatten(-2)


def pack(codes: Tensor, scales: Tensor) -> Tensor:
    """One uint8 row per leading index: the codes' bytes, then the scales' bytes.

    One buffer per message, so each exchange is one collective (gloo moves any byte tensor).
    """
    return torch.cat([codes.view(torch.uint8), scales.contiguous().view(torch.uint8)], dim=-1)


def unpack(rows: Tensor, n_codes: int) -> tuple[Tensor, Tensor]:
    """``pack``'s inverse for rows ``(..., L)``: codes ``(..., n_codes)`` and fp32 scales.

    The scales are copied: a float view needs 4-byte alignment that a row offset may lack.
    """
    codes = rows[..., :n_codes].view(torch.int8)
    scales = rows[..., n_codes:].clone(memory_format=torch.contiguous_format)
    return codes, scales.view(torch.float32)


def packed_bytes(n_codes: int, block_size: int) -> int:
    """Bytes of one packed row of ``n_codes`` codes (a multiple of ``block_size``)."""
    return n_codes + SCALE_BYTES * (n_codes // block_size)
