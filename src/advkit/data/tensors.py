"""In-memory datasets as image tensors, the split bundle, and per-channel statistics.

Images are uint8 (0..255, 4x smaller than float) or float32 in [0, 1], on whatever device they
live; batches are converted to float in [0, 1] on the fly by :meth:`TensorData.inputs`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from advkit.data.errors import DataError
from advkit.errors import InputError
from advkit.threat import check_unit_range


class TensorData:
    """A labelled image set: contiguous images (N, C, H, W) and int64 labels (N,).

    Images are uint8 (0..255) or float in [0, 1] (kept as float32; other float types are
    converted once). Float images outside [0, 1] are refused with a DataError that says how to
    fix them (0..255 floats: divide by 255).
    """

    __slots__ = ("images", "labels")

    def __init__(self, images: Tensor, labels: Tensor, *, checked: bool = False) -> None:
        if images.dim() != 4 or not (images.dtype == torch.uint8 or images.is_floating_point()):
            raise ValueError(
                f"images must be a uint8 or float (N, C, H, W) tensor, got {images.dtype} "
                f"{tuple(images.shape)}"
            )
        if images.is_floating_point():
            images = images.to(torch.float32)
            if not checked:
                try:
                    check_unit_range(images, "float images")
                except InputError as exc:
                    raise DataError(f"{exc} (or pass uint8 images)") from None
        if labels.dtype != torch.int64 or labels.dim() != 1:
            raise ValueError(
                f"labels must be an int64 (N,) tensor, got {labels.dtype} {tuple(labels.shape)}"
            )
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if images.device != labels.device:
            raise ValueError(f"images on {images.device} but labels on {labels.device}")
        self.images = images.contiguous()
        self.labels = labels.contiguous()

    @classmethod
    def from_numpy(cls, images: np.ndarray, labels: np.ndarray) -> TensorData:
        """Copy-free where possible; read-only or strided arrays are copied once."""
        images = np.ascontiguousarray(images)
        labels = np.ascontiguousarray(labels, dtype=np.int64)
        if not images.flags.writeable:  # torch refuses to share read-only memory
            images = images.copy()
        if not labels.flags.writeable:
            labels = labels.copy()
        return cls(torch.from_numpy(images), torch.from_numpy(labels))

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.images.device

    def to(self, device: torch.device | str) -> TensorData:
        """The same data on ``device`` (no copy when it is already there)."""
        return TensorData(self.images.to(device), self.labels.to(device), checked=True)

    def take(self, indices: Tensor) -> TensorData:
        """A new dataset with the examples at ``indices`` (any integer or bool index tensor)."""
        indices = indices.to(self.images.device)
        return TensorData(self.images[indices], self.labels[indices], checked=True)

    def inputs(self, index: Tensor | slice) -> Tensor:
        """The images at ``index`` as a new float32 batch in [0, 1] (ready for a model)."""
        return unit_float(self.images[index])

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.images.shape[1:]))
        return f"TensorData({len(self)} images {shape}, device={self.device})"


@dataclass
class DataSplits:
    """Train/val/test sets plus what a model needs to know about them.

    ``mean``/``std`` are per channel, of the training split, in [0, 1] pixel units. ``augment``
    is the dataset's default training augmentation ("none" or "crop-flip").
    """

    train: TensorData
    val: TensorData
    test: TensorData
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str
    dataset: str
    class_names: list[str] | None


def unit_float(images: Tensor) -> Tensor:
    """uint8 images as a new float32 tensor in [0, 1]; float images as a float32 copy."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255)
    return images.to(torch.float32, copy=True)


#: Images per chunk of :func:`channel_stats`: a streamed pass sums the same chunks (same bits).
STATS_CHUNK = 1024


def channel_stats(
    images: Tensor, chunk: int = STATS_CHUNK
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 or [0, 1] float images, in [0, 1] units.

    Accumulates in float64 over chunks of ``chunk`` images, so memory stays small.
    """
    if len(images) == 0:
        raise ValueError("cannot compute statistics of an empty image set")
    sums = [chunk_sums(images[start : start + chunk]) for start in range(0, len(images), chunk)]
    return stats_from_sums(sums, len(images) * images.shape[2] * images.shape[3])


def chunk_sums(images: Tensor) -> Tensor:
    """(2, C) float64: per channel, the sum and the sum of squares of a chunk of images, in
    0..255 units (uint8 as they are, [0, 1] floats scaled by 255).

    The sum of squares goes through ``vector_norm`` over each contiguous image plane, several
    times faster than squaring and reducing the whole chunk.
    """
    n, c, h, w = images.shape
    planes = images.reshape(n, c, h * w).to(torch.float64)
    if images.is_floating_point():  # [0, 1] floats: in the 0..255 units of uint8 chunks
        planes = planes * 255
    total = planes.sum(dim=2).sum(dim=0)
    return torch.stack([total, torch.linalg.vector_norm(planes, dim=2).square().sum(dim=0)])


def stats_from_sums(sums: list[Tensor], count: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std in [0, 1] units from the :func:`chunk_sums` of every chunk, added in order;
    ``count`` is the pixels per channel (images x H x W)."""
    total = torch.zeros_like(sums[0])
    for part in sums:
        total += part.to(total.device)
    mean = total[0] / count
    std = (total[1] / count - mean.square()).clamp_min(0).sqrt()
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())
