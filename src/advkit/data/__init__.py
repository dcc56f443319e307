"""Datasets: readers for the standard formats, in-memory and streamed splits, resumable batching.

>>> splits = load_dataset("mnist", "/data/mnist", val_size=5000)   # doctest: +SKIP
>>> order = epoch_order(len(splits.train), seed=0, epoch=0)          # doctest: +SKIP
>>> for x, y in iterate_batches(splits.train, 128, order=order): ...  # doctest: +SKIP
"""

from advkit.data.batch_reader import BatchReader
from advkit.data.batching import (
    AUGMENTATIONS,
    augment_batch,
    epoch_order,
    iterate_batches,
    num_batches,
)
from advkit.data.errors import DataError, DataNotFoundError
from advkit.data.items import ImageFiles
from advkit.data.loading import load_dataset
from advkit.data.readers import ArrayPair
from advkit.data.specs import DATASETS, ENV_VAR, DatasetSpec, get_spec, resolve_data_dir
from advkit.data.streaming import (
    StreamingData,
    StreamingSplits,
    can_stream,
    image_shape,
    open_splits,
    stream_splits,
)
from advkit.data.tensors import DataSplits, TensorData, channel_stats, unit_float

__all__ = [
    "AUGMENTATIONS",
    "DATASETS",
    "ENV_VAR",
    "ArrayPair",
    "BatchReader",
    "DataError",
    "DataNotFoundError",
    "DataSplits",
    "DatasetSpec",
    "ImageFiles",
    "StreamingData",
    "StreamingSplits",
    "TensorData",
    "augment_batch",
    "can_stream",
    "channel_stats",
    "epoch_order",
    "get_spec",
    "image_shape",
    "iterate_batches",
    "load_dataset",
    "num_batches",
    "open_splits",
    "resolve_data_dir",
    "stream_splits",
    "unit_float",
]
