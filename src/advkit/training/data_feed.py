"""A run's data on one worker: the path it takes (in memory or streamed), its validation examples
decoded, and this worker's batches of each epoch.

Both paths give the same batches, bit for bit: the same epoch order and shards
(``batches.epoch_slices``), the same pixels (one decoder), the same conversion to float and
augmentation keyed per sample, done here in the training process (``batches.make_batch``). So a
run may resume on the other path, and mid-epoch resume is exact on either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import torch

from advkit.config import TrainConfig
from advkit.data import (
    BatchReader,
    DataError,
    DataSplits,
    StreamingData,
    StreamingSplits,
    TensorData,
    can_stream,
    channel_stats,
    image_shape,
    open_splits,
)
from advkit.data.loading_path import LoadingPath, cannot_stream, choose_path
from advkit.distributed import World
from advkit.training.batches import Batch, epoch_slices, make_batch, worker_batches


def open_data(config: TrainConfig) -> DataSplits | StreamingSplits:
    """The config's dataset, split (streamable sources listed, not decoded); ``--data-loading
    stream`` of array data is refused before anything is read."""
    if config.data_loading == "stream" and not can_stream(config.dataset):
        raise DataError(cannot_stream(config.dataset))
    return open_splits(
        config.dataset, config.data_dir, val_size=config.val_size, subset=config.subset,
        seed=config.seed,
    )  # fmt: skip


class DataFeed:
    """The training data of one worker: ``train`` (a TensorData on the device, or the streamed
    split), ``val`` (the first ``val_examples`` validation examples, decoded, on the device),
    ``path`` (the decision, said in the log by the writer) and :meth:`batches`.

    Every worker takes rank 0's decision (a machine with less memory follows it: the batches
    are the same either way, and the statistics' pass is a collective).
    """

    def __init__(
        self, splits: DataSplits | StreamingSplits, config: TrainConfig, device: torch.device,
        world: World,
    ) -> None:  # fmt: skip
        self.splits = splits
        self.config = config
        self.device = device
        self.world = world
        path = choose_path(splits, config.data_loading, config.data_workers, device)
        self.path: LoadingPath = world.broadcast_object(path)  # said when training starts
        self.reader: BatchReader | None = None
        val_count = torch.arange(min(config.val_examples, len(splits.val)))
        if not isinstance(splits, StreamingSplits):
            self.train: TensorData | StreamingData = splits.train.to(device)
            self.val = splits.val.take(val_count).to(device)
            return
        streaming = self.path.path == "stream"
        self.reader = splits.train.reader(
            self.path.workers, pin_memory=streaming and device.type == "cuda", seed=config.seed
        )
        self.val = splits.val.take(val_count, reader=self.reader).to(device)
        if streaming:
            self.train = splits.train
            if config.normalize:
                splits.compute_stats(self.reader, world)
            return
        train = splits.train.take(torch.arange(len(splits.train)), reader=self.reader)
        self.close()  # decoded: the workers have nothing left to read
        if splits.mean is None and config.normalize:
            splits.mean, splits.std = channel_stats(train.images)  # the streamed pass's bits
        self.train = train.to(device)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return image_shape(self.train)

    def batches(self, *, epoch: int, start_batch: int, first_step: int) -> Iterator[Batch]:
        """This worker's batches of ``epoch`` from ``start_batch`` on (see ``epoch_slices``)."""
        config = self.config
        augment = config.augment or self.splits.augment
        if isinstance(self.train, TensorData):
            yield from worker_batches(
                self.train, config.batch_size, seed=config.seed, epoch=epoch,
                start_batch=start_batch, first_step=first_step, augment=augment, world=self.world,
            )  # fmt: skip
            return
        assert self.reader is not None  # made with the streamed split
        plan = epoch_slices(
            len(self.train), config.batch_size, seed=config.seed, epoch=epoch,
            start_batch=start_batch, first_step=first_step, world=self.world,
        )  # fmt: skip
        slices = list(plan)
        read = self.reader.read([self.train.indices[part.ids] for part in slices])
        for part, (images, labels) in zip(slices, read, strict=True):
            part = dataclasses.replace(part, ids=part.ids.to(self.device, non_blocking=True))
            images = images.to(self.device, non_blocking=True)
            labels = labels.to(self.device, non_blocking=True)
            yield make_batch(part, images, labels, seed=config.seed, augment=augment)

    def close(self) -> None:
        """Stop the data workers, if any."""
        if self.reader is not None:
            self.reader.close()
