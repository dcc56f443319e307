"""Per-epoch measurements beside validation that describe a run and never steer it.

- ``train_sample_*`` (``track_train_sample``, on by default): clean and PGD accuracy and mean CE
  on a fixed, seeded sample of ``val_examples`` training images, unaugmented, under the
  validation attack (PGD-``val_steps`` at the full eps). Against ``val_*`` it is the robust
  generalization gap of the robust-overfitting papers (Rice et al., ICML 2020,
  arXiv:2002.11569); the running ``train_acc`` cannot serve, being measured on the training
  attack's inputs while the weights move. Cost: one more validation per epoch.
- ``test_sample_*`` (``track_test_sample``, opt-in): the same on a fixed sample of test images,
  for curves only; model selection never reads it (choosing an epoch by it would make the test
  set a validation set).
- ``val_grad_align`` (``track_grad_align``, opt-in): GradAlign's cosine
  (:mod:`advkit.alignment`) on the validation images, with ``val_grad_align_zero`` the fraction
  whose gradient was zero: catastrophic overfitting shows as the cosine falling. Cost: two input
  gradients per image, a fifth of a PGD-10 validation.

Nothing here changes the training run: the attacks' random starts come from a fork of the RNG
(:func:`advkit.training.validation.accuracies`), eta from noise keyed to each validation image,
and the samples are drawn with their own generator.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from advkit.alignment import measure_alignment
from advkit.config import TrainConfig
from advkit.data import TensorData
from advkit.distributed import World
from advkit.noise import sample_noise
from advkit.training.validation import MEASUREMENT_SEED, clean_and_pgd

#: ``purpose`` keys of the samples and of GradAlign's eta (any values not used elsewhere).
TRAIN_SAMPLE_PURPOSE, TEST_SAMPLE_PURPOSE, GRAD_ALIGN_PURPOSE = 101, 102, 103


def fixed_sample(data: TensorData, count: int, seed: int, purpose: int) -> TensorData:
    """``count`` examples of ``data`` drawn without replacement by a generator of their own
    (seeded by ``seed`` and ``purpose``), in dataset order: the same every epoch and on every
    worker, and the global RNG untouched."""
    count = min(count, len(data))
    generator = torch.Generator().manual_seed(seed * 1_000_003 + purpose)
    indices = torch.randperm(len(data), generator=generator)[:count].sort().values
    return data.take(indices)


class EpochTracking:
    """The ``track_*`` measurements of a run, on samples fixed when the trainer is built."""

    def __init__(
        self, config: TrainConfig, *, train: TensorData, val: TensorData, test: TensorData,
        world: World,
    ) -> None:  # fmt: skip
        self.config = config
        self.world = world
        count = config.val_examples
        self.samples: dict[str, TensorData] = {}
        if config.track_train_sample and count:
            self.samples["train_sample"] = fixed_sample(
                train, count, config.seed, TRAIN_SAMPLE_PURPOSE
            )
        if config.track_test_sample and count and len(test):
            self.samples["test_sample"] = fixed_sample(
                test, count, config.seed, TEST_SAMPLE_PURPOSE
            ).to(train.device)
        self.align_data = val if config.track_grad_align and len(val) else None

    def measure(self, model: nn.Module) -> dict[str, Any]:
        """This epoch's record entries for ``model`` (the weights validated)."""
        c = self.config
        record: dict[str, Any] = {}
        for prefix, data in self.samples.items():
            measured = clean_and_pgd(
                model, data, eps=c.eps, norm=c.norm, steps=c.val_steps,
                batch_size=max(c.batch_size, 256), world=self.world, desc=prefix.replace("_", " "),
            )  # fmt: skip
            record |= {f"{prefix}_{key}": value for key, value in measured.items()}
        if self.align_data is not None:
            record |= self._grad_align(model, self.align_data)
        return record

    def _grad_align(self, model: nn.Module, data: TensorData) -> dict[str, float]:
        """Mean GradAlign cosine over ``data`` (each worker its share, sums reduced) and the
        fraction of zero gradients. eta is keyed to each image's index, fixed across epochs."""
        c = self.config
        if c.eps <= 0:
            return {}
        share = range(len(data))[self.world.shard(len(data))]
        ids = torch.arange(share.start, share.stop)
        inputs = data.inputs(slice(share.start, share.stop))
        labels = data.labels[share.start : share.stop]
        noise = sample_noise(MEASUREMENT_SEED, 0, ids, GRAD_ALIGN_PURPOSE)
        with torch.random.fork_rng(devices=[inputs.device] if inputs.device.type == "cuda" else []):
            alignment = measure_alignment(
                model, inputs, labels, eps=c.eps, norm=c.norm, noise=noise,
                batch_size=max(c.batch_size, 256),
            )  # fmt: skip
        sums = torch.stack([alignment.cos.double().sum(), alignment.zero.double().sum()]).to(
            torch.float64
        )
        total, zero = self.world.all_reduce_sum(sums).tolist()
        n = max(len(data), 1)
        return {"val_grad_align": total / n, "val_grad_align_zero": zero / n}
