"""A caller's own data as advkit's splits: tensors, numpy arrays, a ``Dataset`` or a ``DataLoader``.

Whatever comes in becomes :class:`TensorData` (uint8 or [0, 1] float images, NCHW) so every
guarantee of the built-in datasets holds: the same shuffle per (seed, epoch), mid-epoch resume,
per-sample augmentation. A validation split is held out of the training data when none is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset

from advkit.data.errors import DataError
from advkit.data.labels import check_label_range, class_indices
from advkit.data.tensors import DataSplits, TensorData, channel_stats

#: The validation split held out of the caller's training data when none is given: this many
#: examples at most, and never more than a tenth of the data.
DEFAULT_VAL_SIZE = 5000


def default_val_size(n: int) -> int:
    """The validation split held out of ``n`` training examples when none is given."""
    return min(DEFAULT_VAL_SIZE, n // 10)


def as_tensor_data(data: Any, what: str = "data") -> TensorData:
    """``data`` as TensorData: a TensorData, an (images, labels) pair of tensors or numpy arrays,
    a map-style ``Dataset`` of (image, label) items, or a ``DataLoader`` over one.

    Images are (N, C, H, W) or (N, H, W) (numpy also (N, H, W, C)), uint8 or float in [0, 1].
    A Dataset is read once into memory.
    """
    if isinstance(data, TensorData):
        return data
    if isinstance(data, DataLoader):
        return as_tensor_data(data.dataset, what)
    if isinstance(data, IterableDataset):
        raise DataError(
            f"{what} is an IterableDataset, whose order advkit cannot replay on resume; pass a "
            "map-style Dataset (with __len__ and __getitem__) or (images, labels) tensors"
        )
    if isinstance(data, Dataset):
        return _read_dataset(data, what)
    if isinstance(data, tuple | list) and len(data) == 2:
        images, labels = data
        return _from_arrays(images, labels, what)
    raise DataError(
        f"{what} must be (images, labels) tensors or numpy arrays, a torch Dataset or a "
        f"DataLoader, got {type(data).__name__}"
    )


def _from_arrays(images: Any, labels: Any, what: str) -> TensorData:
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(_nchw_numpy(images, what)))
    if not isinstance(images, Tensor):
        raise DataError(f"{what}: images must be a tensor or numpy array, got {type(images)}")
    if images.dim() == 3:
        images = images[:, None]
    if images.dim() != 4:
        raise DataError(
            f"{what}: images must be (N, C, H, W) or (N, H, W), got shape {tuple(images.shape)}"
        )
    if looks_channels_last(tuple(images.shape)):
        raise DataError(
            f"{what}: images of shape {tuple(images.shape)} look channels-last (N, H, W, C): "
            "permute them to (N, C, H, W), e.g. images.permute(0, 3, 1, 2)"
        )
    if not (images.dtype == torch.uint8 or images.is_floating_point()):
        raise DataError(
            f"{what}: images must be uint8 (0..255) or float in [0, 1], got {images.dtype}"
        )
    labels = _labels(labels, len(images), what)
    return TensorData(images.detach().cpu(), labels)


def looks_channels_last(shape: tuple[int, ...]) -> bool:
    """A 4-D image shape whose last axis holds 1 or 3 channels and whose second does not."""
    return len(shape) == 4 and shape[-1] in (1, 3) and shape[1] not in (1, 3)


def _nchw_numpy(images: np.ndarray, what: str) -> np.ndarray:
    """NHWC numpy images (the numpy convention: last axis 1 or 3 channels) as NCHW; a tensor
    in that layout is refused instead (torch's convention is NCHW: see :func:`_from_arrays`)."""
    if looks_channels_last(images.shape):
        return images.transpose(0, 3, 1, 2)
    if images.ndim not in (3, 4):
        raise DataError(f"{what}: images must be NCHW, NHWC or NHW, got shape {images.shape}")
    return images


def _labels(labels: Any, n: int, what: str) -> Tensor:
    return torch.from_numpy(class_indices(labels, what, count=n))


def _read_dataset(dataset: Dataset, what: str) -> TensorData:
    """Every (image, label) item of a map-style Dataset, decoded into memory by the streaming
    path's reader (the same checks of every item)."""
    from advkit.data.streaming import StreamingData

    source = StreamingData.from_dataset(dataset, name=what)
    return source.take(torch.arange(len(source)))


def user_splits(
    train_data: Any,
    val_data: Any = None,
    *,
    val_size: int | None = None,
    seed: int = 0,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    augment: str = "none",
    name: str = "user-data",
    classes_owner: str | None = None,
) -> DataSplits:
    """The caller's data as DataSplits; without ``val_data``, ``val_size`` examples (default
    min(5000, N // 10)) held out of ``train_data`` at random, by ``seed``, as load_dataset does.

    The test split is the validation split (``fit`` never reads it; evaluation takes its own
    data). ``classes_owner`` names where ``num_classes`` comes from in the message refusing
    labels beyond it (default "num_classes=K").
    """
    train = as_tensor_data(train_data, "train_data")
    if len(train) == 0:
        raise DataError("train_data is empty (0 images): training needs at least one example")
    val = None if val_data is None else as_tensor_data(val_data, "val_data")
    if val is not None and len(val) == 0:
        raise DataError(
            "val_data is empty (0 images): pass validation examples, or leave val_data out to "
            "hold some out of train_data"
        )
    if val is not None and val.images.shape[1:] != train.images.shape[1:]:
        raise DataError(
            f"val_data images are {tuple(val.images.shape[1:])} but train_data images "
            f"{tuple(train.images.shape[1:])} (C, H, W); they must agree"
        )
    seen = max(int(train.labels.max()), int(val.labels.max()) if val is not None else 0) + 1
    if class_names is not None and num_classes is None:
        num_classes = len(class_names)
        owner = f"{num_classes} class_names"
    else:
        owner = classes_owner or f"num_classes={num_classes}"
    num_classes = max(seen, 2) if num_classes is None else num_classes
    check_label_range(train.labels, num_classes, "train_data", owner)
    if val is not None:
        check_label_range(val.labels, num_classes, "val_data", owner)
    else:
        held = default_val_size(len(train)) if val_size is None else val_size
        if not 0 <= held < len(train):
            raise DataError(
                f"val_size={held} must be in 0..{len(train) - 1} for {len(train)} training "
                "examples; lower it, or pass val_data"
            )
        perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        is_val = torch.zeros(len(train), dtype=torch.bool)
        is_val[perm[:held]] = True
        train, val = (
            train.take(torch.nonzero(~is_val).flatten()),
            train.take(torch.nonzero(is_val).flatten()),
        )
    mean, std = channel_stats(train.images)
    return DataSplits(
        train=train, val=val, test=val, num_classes=num_classes, mean=mean, std=std,
        augment=augment, dataset=name, class_names=class_names,
    )  # fmt: skip
