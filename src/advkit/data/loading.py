"""``load_dataset``: read a registered dataset and split it into train/val/test tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from advkit.data.errors import DataError, DataNotFoundError
from advkit.data.readers import Splits
from advkit.data.specs import DatasetSpec, get_spec, resolve_data_dir
from advkit.data.tensors import DataSplits, TensorData, channel_stats


def _read(spec: DatasetSpec, path: Path) -> tuple[Splits, list[str] | None]:
    """The spec's arrays and class names; missing-file errors get the spec's how-to appended."""
    try:
        return spec.load(path), spec.class_names(path)
    except DataNotFoundError as exc:
        if spec.how_to_get in str(exc):
            raise
        raise DataNotFoundError(f"{exc} {spec.how_to_get}") from exc


def _check(
    spec: DatasetSpec, path: Path, splits: Splits, num_classes: int, for_training: bool
) -> None:
    """Shape, dtype and label checks that hold for every reader (readers may be user-supplied);
    an empty training split only where it is trained on, an empty test split where it is not."""
    (x_train, _), (x_test, _) = splits
    for part, (images, labels) in zip(("train", "test"), splits, strict=True):
        if images.ndim != 4 or not (images.dtype == np.uint8 or images.dtype.kind == "f"):
            raise DataError(
                f"{path}: {part} images must be uint8 or float in [0, 1] (N, C, H, W), got "
                f"{images.dtype} {images.shape}"
            )
        if labels.ndim != 1 or len(labels) != len(images):
            raise DataError(
                f"{path}: {len(images)} {part} images but labels of shape {labels.shape}"
            )
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise DataError(
                f"{path}: {part} labels span {labels.min()}..{labels.max()}, "
                f"outside 0..{num_classes - 1}"
            )
    if len(x_train) == 0 and for_training:
        raise DataError(
            f"{path} holds no training images (an empty training split: x_train and y_train for "
            "an .npz); training needs them, evaluation needs only the test split"
        )
    if len(x_test) == 0 and not for_training:
        raise DataError(f"{path} holds no test images (an empty test split): nothing to evaluate")
    if len(x_train) and x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"{path}: training images are {x_train.shape[1:]} (C, H, W) but test "
            f"images are {x_test.shape[1:]}; both splits must share one shape"
        )
    shape = tuple((x_train if len(x_train) else x_test).shape[1:])
    if spec.image_shape is not None and shape != spec.image_shape:
        raise DataError(
            f"{path}: {spec.name} images should be {spec.image_shape} (C, H, W) "
            f"but these are {shape}; is it the right dataset?"
        )


def check_split_options(val_size: int, subset: int | None) -> None:
    if val_size < 0:
        raise DataError(f"val_size must be 0 or more, got {val_size}")
    if subset is not None and subset < 1:
        raise DataError(f"subset must be at least 1 (or None for all), got {subset}")


def split_indices(
    n: int, *, val_size: int, subset: int | None, seed: int, name: str
) -> tuple[Tensor, Tensor]:
    """(training, validation) indices into ``n`` training examples, each in original order.

    The validation split is ``val_size`` examples drawn at random (seeded by ``seed``);
    ``subset=N`` keeps the first N of the rest. The one rule of every path (in memory,
    streamed), so each holds out the same examples for the same seed.
    """
    check_split_options(val_size, subset)
    if val_size >= n:
        raise DataError(
            f"val_size={val_size} must be smaller than the {n} training examples of "
            f"{name}; lower val_size (0 for no validation split)"
        )
    held_out = torch.zeros(n, dtype=torch.bool)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held_out[perm[:val_size]] = True
    train_idx = torch.nonzero(~held_out).flatten()
    if subset is not None:
        if subset > len(train_idx):
            raise DataError(
                f"subset={subset} exceeds the {len(train_idx)} training examples left "
                f"after holding out val_size={val_size}; lower subset or val_size"
            )
        train_idx = train_idx[:subset]
    return train_idx, torch.nonzero(held_out).flatten()


def load_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    val_size: int = 5000,
    subset: int | None = None,
    seed: int = 0,
    for_training: bool = True,
) -> DataSplits:
    """Load dataset ``name`` into memory as image tensors, split train/val/test.

    ``for_training=False`` (evaluation) reads data without a training split too (a test-only
    .npz), refusing an empty test split instead.

    The validation split is ``val_size`` examples held out of the training set at random
    (seeded by ``seed``, kept in original order). ``subset=N`` then keeps only the first N of
    the remaining training examples (in original order). Mean/std come from the final training
    split. See :func:`resolve_data_dir` for where the files are looked for.
    """
    spec = get_spec(name)
    check_split_options(val_size, subset)
    path = resolve_data_dir(name, data_dir)
    splits, class_names = _read(spec, path)
    (x_train, y_train), (x_test, y_test) = splits
    if spec.num_classes is not None:
        num_classes = spec.num_classes
    elif class_names:
        num_classes = len(class_names)
    else:
        num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    _check(spec, path, splits, num_classes, for_training)

    full = TensorData.from_numpy(x_train, y_train)
    del splits, x_train, y_train
    n = len(full)
    if n == 0:  # evaluation of a test-only file: nothing to split
        train_idx = val_idx = torch.zeros(0, dtype=torch.long)
    else:
        train_idx, val_idx = split_indices(
            n, val_size=val_size, subset=subset, seed=seed, name=name
        )
    train = full if len(train_idx) == n else full.take(train_idx)
    val = full.take(val_idx)
    del full
    test = TensorData.from_numpy(x_test, y_test)
    mean, std = channel_stats(train.images if len(train) else test.images)
    return DataSplits(
        train=train,
        val=val,
        test=test,
        num_classes=num_classes,
        mean=mean,
        std=std,
        augment=spec.augment,
        dataset=spec.name,
        class_names=class_names,
    )
