"""Random draws for a batch: from torch's global RNG, or keyed to each sample.

Training draws its randomness (attack starts, augmentation) per sample from a key made of the
run's seed, the global step and the sample's index in the dataset. A sample then gets the same
noise whichever worker holds it and however the global batch is split, so N workers train the
model that one process trains, without any worker drawing the noise of the whole global batch.

The keyed draws are a counter-based generator (:mod:`advkit.keyed_bits`): every element's bits
are a hash of its row's key, the draw's number and its position in the row, computed for the
whole batch at once with tensor integer operations on the batch's device. There is no stream to
advance and no per-row generator, so a draw costs the same few kernels whatever the batch size.

Attacks and methods take a ``Noise``; ``GLOBAL_NOISE`` (torch's global RNG, as ``torch.rand``)
is the default everywhere, so a plain call of an attack behaves as it always did.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from advkit.keyed_bits import draw_keys, keyed_words, mix_keys, premix_keys, unit_floats

#: Draws in float32 arithmetic for these dtypes, cast at the end without rounding.
_COMPUTED_IN_FLOAT32 = (torch.float16, torch.bfloat16, torch.float32)


class Noise:
    """Uniform, normal and integer draws shaped ``(N, ...)``, one row per sample."""

    def uniform(self, shape: Sequence[int], *, device: torch.device, dtype: torch.dtype) -> Tensor:
        """U[0, 1) draws of ``shape``."""
        raise NotImplementedError

    def normal(self, shape: Sequence[int], *, device: torch.device, dtype: torch.dtype) -> Tensor:
        """N(0, 1) draws of ``shape``."""
        raise NotImplementedError

    def integers(self, high: int, shape: Sequence[int], *, device: torch.device) -> Tensor:
        """Integers uniform in [0, high), int64, of ``shape``."""
        raise NotImplementedError

    def uniform_like(self, like: Tensor) -> Tensor:
        return self.uniform(like.shape, device=like.device, dtype=like.dtype)

    def normal_like(self, like: Tensor) -> Tensor:
        return self.normal(like.shape, device=like.device, dtype=like.dtype)


class GlobalNoise(Noise):
    """torch's global RNG: the same draws as ``torch.rand``/``torch.randn``/``torch.randint``."""

    def uniform(self, shape: Sequence[int], *, device: torch.device, dtype: torch.dtype) -> Tensor:
        return torch.rand(tuple(shape), device=device, dtype=dtype)

    def normal(self, shape: Sequence[int], *, device: torch.device, dtype: torch.dtype) -> Tensor:
        return torch.randn(tuple(shape), device=device, dtype=dtype)

    def integers(self, high: int, shape: Sequence[int], *, device: torch.device) -> Tensor:
        return torch.randint(0, high, tuple(shape), device=device)


GLOBAL_NOISE = GlobalNoise()


class KeyedNoise(Noise):
    """Row ``i`` of every draw is a function of ``keys[i]``, the draw's number and nothing else.

    The k-th draw of a batch (k counted from 0 for this object) mixes k into the keys, so two
    draws never share bits, and a sample's k-th draw depends on nothing but its key and k: not on
    the batch's size, its other rows or the device's stream state.
    """

    def __init__(self, keys: np.ndarray | Sequence[int]) -> None:
        self.keys = np.asarray(keys, dtype=np.uint64).reshape(-1)
        self.draws = 0
        self._premixed = premix_keys(self.keys)
        self._device_keys: dict[torch.device, Tensor] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def _words(self, shape: Sequence[int], device: torch.device, per_row: int) -> Tensor:
        """``(N, per_row)`` int32 words: 32 random bits at each position of each row."""
        rows = shape[0] if len(shape) else 1
        if rows != len(self.keys):
            raise ValueError(f"a draw of {rows} rows from noise keyed for {len(self.keys)} samples")
        device = torch.device(device)
        if device.type == "cpu":  # a few microseconds in numpy, against ten tensor kernels
            keys = torch.from_numpy(draw_keys(self._premixed, self.draws))
        else:  # one copy per batch, then the draws' keys are mixed where they are used
            if device not in self._device_keys:
                self._device_keys[device] = torch.from_numpy(self._premixed).to(device)
            keys = draw_keys(self._device_keys[device], self.draws)
        self.draws += 1
        return keyed_words(keys, per_row)

    def uniform(self, shape: Sequence[int], *, device: torch.device, dtype: torch.dtype) -> Tensor:
        shape = tuple(shape)
        per_row = math.prod(shape[1:])
        if dtype == torch.float64:
            words = self._words(shape, device, 2 * per_row)
            high, low = words[:, :per_row], words[:, per_row:]
            return unit_floats(high, torch.float64, low=low).view(shape)
        return unit_floats(self._words(shape, device, per_row), dtype).view(shape)

    def normal(self, shape: Sequence[int], *, device: torch.device, dtype: torch.dtype) -> Tensor:
        # Box-Muller on the row's two halves of uniforms: both outputs of each pair are used.
        shape = tuple(shape)
        per_row = math.prod(shape[1:])
        pairs = (per_row + 1) // 2
        work = torch.float32 if dtype in _COMPUTED_IN_FLOAT32 else torch.float64
        uniform = self.uniform((shape[0] if shape else 1, 2 * pairs), device=device, dtype=work)
        radius = uniform[:, :pairs].neg_().log1p_().mul_(-2.0).sqrt_()
        angle = uniform[:, pairs:].mul_(2 * math.pi)
        out = torch.empty_like(uniform)
        torch.cos(angle, out=out[:, :pairs]).mul_(radius)
        torch.sin(angle, out=out[:, pairs:]).mul_(radius)
        if 2 * pairs != per_row:
            out = out[:, :per_row]
        return out.to(dtype).reshape(shape)

    def integers(self, high: int, shape: Sequence[int], *, device: torch.device) -> Tensor:
        if not 1 <= high <= 2**31:
            raise ValueError(f"keyed integers are drawn below 1 <= high <= 2**31, got {high}")
        shape = tuple(shape)
        words = self._words(shape, device, math.prod(shape[1:]))
        # Lemire's multiply-shift: the word's 32 bits as an unsigned fraction of [0, high).
        unsigned = words.to(torch.int64).bitwise_and_(0xFFFFFFFF)
        return unsigned.mul_(high).bitwise_right_shift_(32).view(shape)


def sample_noise(seed: int, step: int, sample_ids: Tensor | np.ndarray, purpose: int) -> KeyedNoise:
    """Noise for the samples ``sample_ids`` (dataset indices) at global ``step`` of a run seeded
    ``seed``; ``purpose`` separates independent uses in one step (augmentation, the method)."""
    return KeyedNoise(mix_keys(seed, step, purpose, sample_ids))


__all__ = ["GLOBAL_NOISE", "GlobalNoise", "KeyedNoise", "Noise", "mix_keys", "sample_noise"]
