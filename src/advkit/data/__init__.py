"""Datasets: readers for the standard formats, in-memory splits, and resumable batching.

>>> splits = load_dataset("mnist", "/data/mnist", val_size=5000)   # doctest: +SKIP
>>> order = epoch_order(len(splits.train), seed=0, epoch=0)          # doctest: +SKIP
>>> for x, y in iterate_batches(splits.train, 128, order=order): ...  # doctest: +SKIP
"""

from advkit.data.batching import (
    AUGMENTATIONS,
    augment_batch,
    epoch_order,
    iterate_batches,
    num_batches,
)
from advkit.data.errors import DataError, DataNotFoundError
from advkit.data.loading import load_dataset
from advkit.data.readers import ArrayPair
from advkit.data.specs import DATASETS, ENV_VAR, DatasetSpec, get_spec, resolve_data_dir
from advkit.data.tensors import DataSplits, TensorData, channel_stats

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "ENV_VAR",
    "ArrayPair",
    "DataError",
    "DataNotFoundError",
    "DataSplits",
    "DatasetSpec",
    "TensorData",
    "augment_batch",
    "channel_stats",
    "epoch_order",
    "get_spec",
    "iterate_batches",
    "load_dataset",
    "num_batches",
    "resolve_data_dir",
]
