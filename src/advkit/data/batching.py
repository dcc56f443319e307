"""Resumable batch iteration over in-memory data, with whole-batch GPU-friendly augmentation.

The shuffle order depends only on ``(seed, epoch)``, and augmentation draws from a ``Noise``
(torch's global RNG unless the caller keys it per sample, as the trainer does), so a trainer
checkpoint can resume mid-epoch and see exactly the batches it would have seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from advkit.data.tensors import TensorData
from advkit.noise import GLOBAL_NOISE, Noise
from advkit.registry import Registry

#: name -> augmentation(inputs, noise): a float batch in, the augmented batch out.
AUGMENTATIONS: Registry[Callable[[Tensor, Noise], Tensor]] = Registry("augmentation")

CROP_PADDING = 4


@AUGMENTATIONS.register("none")
def _no_augment(inputs: Tensor, noise: Noise = GLOBAL_NOISE) -> Tensor:
    del noise
    return inputs


@AUGMENTATIONS.register("crop-flip")
def crop_flip(inputs: Tensor, noise: Noise = GLOBAL_NOISE, padding: int = CROP_PADDING) -> Tensor:
    """Random crop from the zero-padded image plus random horizontal flip, per sample.

    One gather over the whole batch (no per-sample Python); the random numbers come from
    ``noise`` on the inputs' device.
    """
    n, c, h, w = inputs.shape
    if n == 0:
        return inputs
    device = inputs.device
    padded = F.pad(inputs, (padding, padding, padding, padding))
    top, left = noise.integers(2 * padding + 1, (n, 2), device=device).unbind(1)
    flip = noise.integers(2, (n,), device=device).bool()
    cols = torch.arange(w, device=device)
    rows = top[:, None] + torch.arange(h, device=device)  # (n, h)
    cols = left[:, None] + torch.where(flip[:, None], w - 1 - cols, cols)  # (n, w)
    batch = torch.arange(n, device=device)[:, None, None, None]
    chans = torch.arange(c, device=device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


def unit_float(images: Tensor) -> Tensor:
    """Stored images as float32 in [0, 1]: uint8 ones divided by 255, float ones as they are.
    The one conversion of every path from stored images to a model's inputs."""
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255)
    return images.to(torch.float32)


def augment_batch(inputs: Tensor, kind: str, noise: Noise = GLOBAL_NOISE) -> Tensor:
    """Apply the augmentation registered as ``kind`` ("none" or "crop-flip") to a float batch."""
    return AUGMENTATIONS.get(kind)(inputs, noise)


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches ``n`` examples make."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if n < 0:
        raise ValueError(f"number of examples must be non-negative, got {n}")
    return n // batch_size if drop_last else -(-n // batch_size)


def epoch_order(
    num_examples: int, seed: int, epoch: int, device: torch.device | str | None = None
) -> Tensor:
    """A permutation of ``range(num_examples)`` that depends only on ``(seed, epoch)``.

    Drawn on the CPU from its own generator (never the global RNG), so it is the same on every
    device and after a resume.
    """
    if seed < 0 or epoch < 0:
        raise ValueError(f"seed and epoch must be non-negative, got seed={seed}, epoch={epoch}")
    mixed = int(np.random.SeedSequence((seed, epoch)).generate_state(1, dtype=np.uint64)[0])
    generator = torch.Generator().manual_seed(mixed)
    return torch.randperm(num_examples, generator=generator).to(device or "cpu")


def iterate_batches(
    data: TensorData,
    batch_size: int,
    *,
    order: Tensor | None = None,
    start_batch: int = 0,
    augment: str = "none",
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(inputs, labels)`` batches: inputs float32 in [0, 1] on the data's device.

    ``order`` (e.g. from :func:`epoch_order`) picks and orders the examples; ``start_batch``
    skips that many batches (mid-epoch resume); ``augment`` names an augmentation applied to
    each whole batch.
    """
    device = data.device
    order = torch.arange(len(data), device=device) if order is None else order.to(device)
    if order.dim() != 1:
        raise ValueError(f"order must be a 1-D index tensor, got shape {tuple(order.shape)}")
    transform = AUGMENTATIONS.get(augment)
    total = num_batches(len(order), batch_size, drop_last)
    if not 0 <= start_batch <= total:
        raise ValueError(f"start_batch={start_batch} is outside 0..{total} for this epoch")
    for b in range(start_batch, total):
        index = order[b * batch_size : (b + 1) * batch_size]
        inputs = data.images[index].to(torch.float32).div_(255)
        yield transform(inputs), data.labels[index]
