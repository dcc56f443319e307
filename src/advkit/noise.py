"""Random draws for a batch: from torch's global RNG, or keyed to each sample.

Training draws its randomness (attack starts, augmentation) per sample from a key made of the
run's seed, the global step and the sample's index in the dataset. A sample then gets the same
noise whichever worker holds it and however the global batch is split, so N workers train the
model that one process trains, without any worker drawing the noise of the whole global batch.
The engine stays torch's own: each row is drawn from a ``torch.Generator`` seeded with its key.

Attacks and methods take a ``Noise``; ``GLOBAL_NOISE`` (torch's global RNG, as ``torch.rand``)
is the default everywhere, so a plain call of an attack behaves as it always did.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_MASK63 = np.uint64((1 << 63) - 1)  # torch.Generator seeds are taken as signed 64-bit


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
    """Row ``i`` of every draw comes from a generator seeded by ``keys[i]`` and the draw's number.

    The k-th draw of a batch (k counted from 0 for this object) mixes k into the keys, so two draws
    never share a stream, and a sample's k-th draw depends on nothing but its key and k.
    """

    def __init__(self, keys: np.ndarray | Sequence[int]) -> None:
        self.keys = np.asarray(keys, dtype=np.uint64).reshape(-1)
        self.draws = 0
        self._generators: dict[torch.device, torch.Generator] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def _row_seeds(self, rows: int) -> list[int]:
        if rows != len(self.keys):
            raise ValueError(f"a draw of {rows} rows from noise keyed for {len(self.keys)} samples")
        seeds = mix_keys(self.keys, self.draws) & _MASK63
        self.draws += 1
        return [int(seed) for seed in seeds]

    def _generator(self, device: torch.device) -> torch.Generator:
        device = torch.device(device)
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device)
        return self._generators[device]

    def _fill(self, shape: Sequence[int], out: Tensor, draw: str, high: int = 0) -> Tensor:
        generator = self._generator(out.device)
        for row, seed in zip(out, self._row_seeds(shape[0]), strict=True):
            generator.manual_seed(seed)
            if draw == "uniform":
                row.uniform_(generator=generator)
            elif draw == "normal":
                row.normal_(generator=generator)
            else:
                row.random_(0, high, generator=generator)
        return out

    def uniform(self, shape: Sequence[int], *, device: torch.device, dtype: torch.dtype) -> Tensor:
        return self._fill(shape, torch.empty(tuple(shape), device=device, dtype=dtype), "uniform")

    def normal(self, shape: Sequence[int], *, device: torch.device, dtype: torch.dtype) -> Tensor:
        return self._fill(shape, torch.empty(tuple(shape), device=device, dtype=dtype), "normal")

    def integers(self, high: int, shape: Sequence[int], *, device: torch.device) -> Tensor:
        out = torch.empty(tuple(shape), device=device, dtype=torch.int64)
        return self._fill(shape, out, "integers", high)


def sample_noise(seed: int, step: int, sample_ids: Tensor | np.ndarray, purpose: int) -> KeyedNoise:
    """Noise for the samples ``sample_ids`` (dataset indices) at global ``step`` of a run seeded
    ``seed``; ``purpose`` separates independent uses in one step (augmentation, the method)."""
    return KeyedNoise(mix_keys(seed, step, purpose, sample_ids))


__all__ = ["GLOBAL_NOISE", "GlobalNoise", "KeyedNoise", "Noise", "mix_keys", "sample_noise"]
