"""This worker's part of every global batch, with augmentation keyed to the samples.

The global batch ``b`` of an epoch is the same on every worker (the epoch order depends only on
the seed and the epoch); each worker takes its contiguous slice in rank order, so W workers
together see exactly what one process sees. Augmentation draws are keyed to the run's seed, the
global step and the samples' dataset indices, never to the rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from advkit.data import AUGMENTATIONS, TensorData, epoch_order, num_batches, unit_float
from advkit.distributed import World
from advkit.noise import sample_noise

#: ``purpose`` keys of the per-sample noise: one stream for augmentation, one for the method.
AUGMENT_NOISE = 1
METHOD_NOISE = 2


@dataclass
class Batch:
    """One worker's slice of a global batch."""

    ids: Tensor  # (n,) dataset indices of the slice's samples
    inputs: Tensor  # (n, C, H, W) float in [0, 1], augmented
    labels: Tensor  # (n,)
    global_size: int  # size of the whole global batch (all workers together)
    index: int  # 0-based index of the global batch in its epoch
    step: int  # 0-based global step of the run

    @property
    def share(self) -> float:
        """This slice's fraction of the global batch: its mean loss times ``share * workers``
        makes DDP's average over the workers the global batch's mean (the factor is 1.0 whenever
        the global batch splits evenly)."""
        return 0.0 if self.global_size == 0 else len(self.ids) / self.global_size


@dataclass(frozen=True)
class Slice:
    """Which samples this worker takes of one global batch (no pixels yet)."""

    ids: Tensor  # (n,) indices into the training split
    global_size: int
    index: int  # 0-based index of the global batch in its epoch
    step: int  # 0-based global step of the run


def epoch_slices(
    num_examples: int,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    start_batch: int,
    first_step: int,
    world: World,
    device: torch.device | str | None = None,
) -> Iterator[Slice]:
    """This worker's slices of the epoch's global batches from ``start_batch`` on: the one plan
    of every data path (in memory, streamed).

    A last global batch smaller than the number of workers would leave a worker without data
    (and DDP waiting for it): it is skipped on every worker.
    """
    order = epoch_order(num_examples, seed, epoch, device=device)
    total = num_batches(len(order), batch_size)
    for offset, b in enumerate(range(start_batch, total)):
        index = order[b * batch_size : (b + 1) * batch_size]
        if len(index) < world.size:
            continue
        yield Slice(index[world.shard(len(index))], len(index), b, first_step + offset)


def make_batch(part: Slice, images: Tensor, labels: Tensor, *, seed: int, augment: str) -> Batch:
    """The slice's training batch from its stored ``images`` (uint8, or float in [0, 1]):
    converted to float and augmented with draws keyed to the run's seed, the step and the ids."""
    noise = sample_noise(seed, part.step, part.ids, AUGMENT_NOISE)
    inputs = AUGMENTATIONS.get(augment)(unit_float(images), noise)
    return Batch(part.ids, inputs, labels, part.global_size, part.index, part.step)


def worker_batches(
    data: TensorData,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    start_batch: int,
    first_step: int,
    augment: str,
    world: World,
) -> Iterator[Batch]:
    """Yield this worker's slices of the epoch's global batches from ``start_batch`` on, from
    data in memory (see :func:`epoch_slices`)."""
    for part in epoch_slices(
        len(data), batch_size, seed=seed, epoch=epoch, start_batch=start_batch,
        first_step=first_step, world=world, device=data.device,
    ):  # fmt: skip
        yield make_batch(
            part, data.images[part.ids], data.labels[part.ids], seed=seed, augment=augment
        )
