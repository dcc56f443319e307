"""This worker's part of every global batch, with augmentation keyed to the samples.

The global batch ``b`` of an epoch is the same on every worker (the epoch order depends only on
the seed and the epoch); each worker takes its contiguous slice in rank order, so W workers
together see exactly what one process sees. Augmentation draws are keyed to the run's seed, the
global step and the samples' dataset indices, never to the rank.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import Tensor

from advkit.data import AUGMENTATIONS, TensorData, epoch_order, num_batches
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
    """Yield this worker's slices of the epoch's global batches from ``start_batch`` on.

    A last global batch smaller than the number of workers would leave a worker without data
    (and DDP waiting for it): it is skipped on every worker.
    """
    transform = AUGMENTATIONS.get(augment)
    order = epoch_order(len(data), seed, epoch, device=data.device)
    total = num_batches(len(order), batch_size)
    for offset, b in enumerate(range(start_batch, total)):
        index = order[b * batch_size : (b + 1) * batch_size]
        step = first_step + offset
        if len(index) < world.size:
            continue
        ids = index[world.shard(len(index))]
        inputs = data.inputs(ids)
        noise = sample_noise(seed, step, ids, AUGMENT_NOISE)
        yield Batch(ids, transform(inputs, noise), data.labels[ids], len(index), b, step)
