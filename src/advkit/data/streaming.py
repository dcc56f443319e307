"""Data read item by item: image folders decoded per batch in DataLoader workers, and any
map-style torch ``Dataset`` of ``(image, label)``.

Nothing is decoded up front: an image folder is listed and its headers read (size and mode), its
labels come from the folder names. A split (:class:`StreamingData`) is a view of a source's
items; the validation split is held out by the rule of ``load_dataset`` (the same examples for
the same seed), and only what is evaluated is decoded into a :class:`TensorData` (``take``).
Training batches go through a :class:`~advkit.data.batch_reader.BatchReader`; the items it reads
are :mod:`advkit.data.items`'. This module holds the splits, their statistics and the choice of
source for a dataset name.

    >>> source = StreamingData.from_dataset(my_dataset)            # doctest: +SKIP
    >>> splits = stream_splits(source, val_size=1000, seed=0)      # doctest: +SKIP
    >>> advkit.train(config, data=splits)                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from advkit.data.batch_reader import BatchReader
from advkit.data.errors import DataError
from advkit.data.items import ImageFiles, Items, as_image
from advkit.data.labels import check_label_range, class_indices
from advkit.data.loading import load_dataset, split_indices
from advkit.data.readers import index_image_folder
from advkit.data.specs import get_spec, resolve_data_dir
from advkit.data.tensors import (
    STATS_CHUNK,
    DataSplits,
    TensorData,
    chunk_sums,
    stats_from_sums,
)

Stats = tuple[tuple[float, ...], tuple[float, ...]]

#: Images per batch when a split is decoded whole (``take``) through the workers.
TAKE_BATCH = 256


class StreamingData:
    """A split of a map-style source read item by item: its labels (known without decoding),
    the images' (C, H, W) shape and dtype, and the source indices of its examples.

    Build one with :meth:`from_dataset` (any Dataset of ``(image, label)``) or
    :func:`image_folder_sources`; ``take`` decodes examples into a :class:`TensorData`.
    """

    def __init__(self, items: Items, indices: Tensor | None = None, source: str = "") -> None:
        self.items = items
        self.indices = torch.arange(len(items)) if indices is None else indices.to(torch.long).cpu()
        self.labels = items.labels[self.indices]
        self.source = source or items.name

    @classmethod
    def from_dataset(
        cls, dataset: Any, labels: Sequence[int] | Tensor | np.ndarray | None = None,
        *, name: str | None = None,
    ) -> StreamingData:  # fmt: skip
        """Stream a map-style ``dataset`` whose items are ``(image, label)``: image a uint8
        (C, H, W) or (H, W) tensor, array or PIL image, or float in [0, 1]; label an int.

        Labels are needed before training (the validation split, the data's fingerprint):
        ``labels`` if given, else ``dataset.targets`` (torchvision's datasets have it) when it
        holds one int per item, else one pass over the whole dataset in this process (every
        item read once: for a large dataset, pass ``labels``). Item 0 is read once for the
        images' shape and dtype. The dataset must return the same item for an index every time
        (random transforms in it would break exact resume: use the trainer's ``augment``).
        """
        name = name or type(dataset).__name__
        try:
            count = len(dataset)
        except TypeError:
            raise DataError(
                f"{name} has no len(): stream a map-style Dataset (with __len__ and "
                "__getitem__), not an iterable one"
            ) from None
        if count == 0:
            raise DataError(f"{name} is empty: it holds no (image, label) items")
        if labels is None and _int_targets(getattr(dataset, "targets", None), count):
            labels = dataset.targets
        if labels is None:
            labels = [dataset[i][1] for i in range(count)]
        labels = _label_tensor(labels, count, name)
        image = as_image(dataset[0][0], f"item 0 of {name}")
        items = Items(dataset, labels, tuple(image.shape), image.dtype, name)
        return cls(items)

    def __len__(self) -> int:
        return len(self.indices)

    @property
    def image_shape(self) -> tuple[int, ...]:
        return self.items.image_shape

    @property
    def dtype(self) -> torch.dtype:
        return self.items.dtype

    def view(self, positions: Tensor) -> StreamingData:
        """The examples at ``positions`` of this split, as a split of the same source."""
        return StreamingData(self.items, self.indices[positions.to(torch.long).cpu()], self.source)

    def reader(self, workers: int = 0, *, pin_memory: bool = False, seed: int = 0) -> BatchReader:
        """A :class:`BatchReader` of this split's source (any split of it can use it)."""
        return BatchReader(self.items, workers=workers, pin_memory=pin_memory, seed=seed)

    def take(
        self, positions: Tensor, *, workers: int = 0, reader: BatchReader | None = None
    ) -> TensorData:
        """Decode the examples at ``positions`` into memory (through ``reader``, else a reader
        with ``workers`` processes made for the occasion)."""
        indices = self.indices[positions.to(torch.long).cpu()]
        own = reader is None or reader.items is not self.items  # a reader of another source
        reader = self.reader(workers) if own else reader
        try:
            parts = list(reader.read(list(indices.split(TAKE_BATCH))))
        finally:
            if own:
                reader.close()
        if not parts:
            images = torch.empty((0, *self.image_shape), dtype=self.dtype)
            return TensorData(images, torch.empty(0, dtype=torch.long))
        return TensorData(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]))

    def identity(self) -> str:
        """What identifies the examples without decoding them: for image folders a checksum of
        the files' names and sizes; for other sources their type and length."""
        dataset = self.items.dataset
        if isinstance(dataset, ImageFiles):
            return dataset.identity(self.indices)
        return f"{type(dataset).__qualname__}:{len(dataset)}"

    def __repr__(self) -> str:
        shape = "x".join(map(str, self.image_shape))
        return f"StreamingData({len(self)} images {shape} {self.dtype} from {self.source})"


def _int_targets(targets: Any, count: int) -> bool:
    try:
        return targets is not None and len(targets) == count
    except TypeError:
        return False


def _label_tensor(labels: Any, count: int, name: str) -> Tensor:
    return torch.from_numpy(class_indices(labels, name, count=count))


def image_folder_sources(root: Path) -> tuple[StreamingData, StreamingData, list[str]]:
    """The training and test sets of an image folder as streamed sources, and its classes:
    files listed and headers read (:func:`index_image_folder`), nothing decoded."""
    index = index_image_folder(root)

    def source(items: list[tuple[Path, int]], split: str) -> StreamingData:
        labels = torch.tensor([label for _, label in items], dtype=torch.long)
        files = ImageFiles(items, index.mode, index.size, root)
        return StreamingData(
            Items(files, labels, index.image_shape, torch.uint8, str(root / split))
        )

    return source(index.train, "train"), source(index.test, "test"), index.classes


@dataclass
class StreamingSplits:
    """Train/val/test of a streamed source, with what a model needs to know about them (the
    counterpart of ``DataSplits``). ``mean``/``std`` (per channel, [0, 1] units) are None until
    computed (:meth:`compute_stats`, a decoding pass) or given."""

    train: StreamingData
    val: StreamingData
    test: StreamingData | None
    num_classes: int
    augment: str
    dataset: str
    class_names: list[str] | None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def compute_stats(self, reader: BatchReader | None = None, world: Any = None) -> Stats:
        """The training split's mean and std, bitwise those of ``load_dataset`` on the same
        images (the same chunks, summed in the same order). One decoding pass, its chunks
        shared out over the workers of ``world`` (each reads 1/W of them), through ``reader``."""
        if self.mean is None or self.std is None:
            self.mean, self.std = streamed_stats(self.train, reader, world)
        return self.mean, self.std


def streamed_stats(
    data: StreamingData, reader: BatchReader | None = None, world: Any = None
) -> Stats:
    """Per-channel mean and std of ``data`` (see :meth:`StreamingSplits.compute_stats`)."""
    if len(data) == 0:
        raise DataError("cannot compute statistics of an empty training split")
    rank, size = (world.rank, world.size) if world is not None else (0, 1)
    chunks = list(data.indices.split(STATS_CHUNK))
    own = reader is None or reader.items is not data.items
    reader = data.reader() if own else reader
    try:
        mine = [chunk_sums(images) for images, _ in reader.read(chunks[rank::size])]
    finally:
        if own:
            reader.close()
    channels = data.image_shape[0]
    if size > 1:  # every chunk's sums on every worker, then added in chunk order
        per_rank = -(-len(chunks) // size)
        padded = torch.zeros(per_rank, 2, channels, dtype=torch.float64)
        if mine:
            padded[: len(mine)] = torch.stack(mine)
        gathered = world.all_gather(padded.to(world.device))
        mine = [gathered[k % size][k // size].cpu() for k in range(len(chunks))]
    _, h, w = data.image_shape
    return stats_from_sums(mine, len(data) * h * w)


def stream_splits(
    train: StreamingData,
    *,
    val: StreamingData | None = None,
    test: StreamingData | None = None,
    val_size: int = 0,
    subset: int | None = None,
    seed: int = 0,
    dataset: str = "custom",
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    augment: str = "none",
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    classes_owner: str | None = None,
) -> StreamingSplits:
    """Splits of a streamed training source: ``val`` if given, else ``val_size`` examples held
    out of ``train`` by the rule of ``load_dataset`` (seeded by ``seed``); ``subset`` keeps the
    first N of the rest. ``num_classes`` defaults to the largest label + 1 (or the number of
    ``class_names``); labels beyond a given count are refused, the message naming
    ``classes_owner`` (default "num_classes=K")."""
    if num_classes is not None:
        owner = classes_owner or f"num_classes={num_classes}"
        check_label_range(train.labels, num_classes, dataset, owner)
        if val is not None:
            check_label_range(val.labels, num_classes, f"{dataset} (validation)", owner)
    if val is not None:
        train_idx, _ = split_indices(len(train), val_size=0, subset=subset, seed=seed, name=dataset)
    else:
        train_idx, val_idx = split_indices(
            len(train), val_size=val_size, subset=subset, seed=seed, name=dataset
        )
        val = train.view(val_idx)
    if num_classes is None:
        num_classes = len(class_names) if class_names else 1 + max(
            int(part.labels.max()) for part in (train, val) if len(part)
        )  # fmt: skip
    return StreamingSplits(
        train=train if len(train_idx) == len(train) else train.view(train_idx), val=val,
        test=test, num_classes=num_classes, augment=augment, dataset=dataset,
        class_names=class_names, mean=tuple(mean) if mean is not None else None,
        std=tuple(std) if std is not None else None,
    )  # fmt: skip


def image_shape(part: TensorData | StreamingData) -> tuple[int, ...]:
    """(C, H, W) of a split's images, in memory or streamed."""
    if isinstance(part, StreamingData):
        return part.image_shape
    return tuple(part.images.shape[1:])


def can_stream(name: str) -> bool:
    """Whether dataset ``name`` is read item by item (image folders) rather than from arrays."""
    return get_spec(name).stream is not None


def open_splits(
    name: str,
    data_dir: str | Path | None = None,
    *,
    val_size: int = 5000,
    subset: int | None = None,
    seed: int = 0,
    for_training: bool = True,
) -> DataSplits | StreamingSplits:
    """Dataset ``name`` split as ``load_dataset`` splits it: a streamable one (image folders)
    as :class:`StreamingSplits`, listed but not decoded; the others read into memory.
    ``for_training=False``: for evaluation, which needs only the test split."""
    spec = get_spec(name)
    if spec.stream is None:
        return load_dataset(
            name, data_dir, val_size=val_size, subset=subset, seed=seed, for_training=for_training
        )
    path = resolve_data_dir(name, data_dir)
    train, test, class_names = spec.stream(path)
    return stream_splits(
        train, test=test, val_size=val_size, subset=subset, seed=seed, dataset=spec.name,
        num_classes=spec.num_classes or (len(class_names) if class_names else None),
        class_names=class_names, augment=spec.augment,
    )  # fmt: skip
