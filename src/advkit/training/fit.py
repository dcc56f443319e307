"""``advkit.fit``: adversarial training of a caller's own module on the caller's own data.

The module and data go through the same trainer as the built-in ones (every method, the guard,
EMA, checkpoints, exact resume, several workers under ``torchrun``); the run folder keeps a
code-free ``torch.export`` copy so ``advkit.load_model(run_dir)`` works in a new process.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from advkit.config import ConfigError, TrainConfig, load_config
from advkit.data.errors import DataError
from advkit.data.streaming import StreamingData, image_shape, stream_splits
from advkit.data.user_data import as_tensor_data, default_val_size, user_splits
from advkit.models import NormalizedModel
from advkit.models.exported import in_process_name
from advkit.training.run import train
from advkit.training.trainer import TrainResult

#: Config fields ``fit`` takes from its own arguments (the module and the data themselves).
_NOT_OPTIONS = {
    "model": "pass the module itself as fit's first argument",
    "model_args": "build the module with its arguments before passing it",
    "dataset": "pass the data itself as train_data (name it with name=...)",
    "data_dir": "pass the data itself as train_data",
    "subset": "slice train_data before passing it",
    "normalize": "pass mean=... and std=... to put a normalization inside the model",
}


def fit(
    model: nn.Module,
    train_data: Any,
    *,
    val_data: Any = None,
    method: str | None = None,
    eps: float | str | None = None,
    run_dir: str | Path | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    num_classes: int | None = None,
    class_names: list[str] | None = None,
    name: str = "user-data",
    resume: bool = False,
    **options: Any,
) -> TrainResult:
    """Adversarially train ``model`` on ``train_data``; returns the trained model and its history.

    ``model`` maps inputs in [0, 1] (N, C, H, W) to logits; ``mean``/``std`` (per channel, in
    [0, 1] units) put a normalization inside it, else it sees raw pixels. It is trained in place
    (the result's ``model.net`` holds the selected weights). ``train_data``/``val_data``:
    (images, labels) tensors or numpy arrays (uint8, or float in [0, 1]), a map-style Dataset or
    a DataLoader over one (its dataset, in advkit's seeded order, with its batch size and
    workers unless ``batch_size``/``data_workers`` are given). Tensors stay in memory; a Dataset
    is decoded into memory when it fits, else streamed per batch through DataLoader workers
    (``data_loading="auto"|"memory"|"stream"``, as ``advkit train --data-loading``). Without
    ``val_data`` a validation split is held out of ``train_data`` (``val_size`` examples,
    default min(5000, N/10)). ``options`` are ``advkit train``'s options by their config names
    (``epochs=10``, ``batch_size=256``, ``norm="l2"``, ``ema_decay=0.999``, ...). With
    ``run_dir`` the run is written there (weights, metrics, checkpoints, model.pt2), and
    ``resume=True`` continues it from its last checkpoint (pass the same module class and data).
    ``method``, ``eps`` and every option left out take ``advkit train``'s defaults (one set of
    defaults, :class:`advkit.config.TrainConfig`'s: an unset eps is the standard budget of the
    data, for data advkit does not know by name 8/255 under L-inf and 0.5 under L2).
    """
    _check_options(options)
    if isinstance(train_data, DataLoader) and train_data.batch_size and "batch_size" not in options:
        options["batch_size"] = train_data.batch_size  # what the caller's loader asked for
    val_size = options.pop("val_size", None)
    seed = int(options.get("seed", 0))
    if isinstance(train_data, DataLoader) and "data_workers" not in options:
        options["data_workers"] = train_data.num_workers
    streamed = _is_dataset(train_data)
    train_set = (
        StreamingData.from_dataset(_dataset(train_data), name=name)
        if streamed
        else as_tensor_data(train_data, "train_data")
    )
    shape = image_shape(train_set)
    wrapped = _wrap(model, shape, mean, std)
    outputs = _probe(wrapped, shape)
    classes = outputs if num_classes is None else num_classes
    owner = f"the model has {outputs} outputs" if num_classes is None else None
    if streamed:  # decoded per batch, or into memory when it fits (the trainer decides)
        val_set = None
        if val_data is not None:
            val_set = StreamingData.from_dataset(
                _dataset(val_data) if _is_dataset(val_data) else _as_dataset(val_data),
                name=f"{name} (validation)",
            )  # fmt: skip
        held = default_val_size(len(train_set)) if val_size is None else val_size
        splits = stream_splits(
            train_set, val=val_set, val_size=0 if val_set is not None else held, seed=seed,
            dataset=name, num_classes=classes, class_names=class_names,
            augment=options.get("augment") or "none", classes_owner=owner,
        )  # fmt: skip
    else:
        splits = user_splits(
            train_set, val_data, val_size=val_size, seed=seed, num_classes=classes,
            class_names=class_names, augment=options.get("augment") or "none", name=name,
            classes_owner=owner,
        )  # fmt: skip
    if outputs != splits.num_classes:
        raise DataError(
            f"the model returns {outputs} logits but the data has {splits.num_classes} classes; "
            "fix its last layer or num_classes="
        )
    given = {"method": method, "eps": eps}
    config = load_config(
        overrides={
            "model": in_process_name(model), "val_size": len(splits.val), "dataset": name,
            **{key: value for key, value in given.items() if value is not None}, **options,
        }
    )  # fmt: skip
    return train(config, run_dir, resume=resume, data=splits, model=wrapped)


def _is_dataset(data: Any) -> bool:
    return isinstance(data, DataLoader | Dataset)


def _dataset(data: Any) -> Dataset:
    """A DataLoader's dataset (its batches are advkit's, in its seeded order), or ``data``."""
    dataset = data.dataset if isinstance(data, DataLoader) else data
    if isinstance(dataset, IterableDataset):
        raise DataError(
            "an IterableDataset's order cannot be replayed on resume; pass a map-style Dataset "
            "(with __len__ and __getitem__) or (images, labels) tensors"
        )
    return dataset


def _as_dataset(data: Any) -> Dataset:
    """Tensors or arrays (validation data beside a streamed training set) as a Dataset."""
    tensors = as_tensor_data(data, "val_data")
    return TensorDataset(tensors.images, tensors.labels)


def _check_options(options: dict[str, Any]) -> None:
    for key in options:
        if key in _NOT_OPTIONS:
            raise ConfigError(f"fit takes no {key}= option: {_NOT_OPTIONS[key]}")
    unknown = sorted(set(options) - {f.name for f in fields(TrainConfig)})
    if unknown:
        raise ConfigError(
            f"fit has no option {unknown[0]!r}; its options are advkit train's by config name "
            "(see `advkit train --help`, with - as _)"
        )


def _wrap(
    model: nn.Module,
    input_shape: tuple[int, ...],
    mean: Sequence[float] | None,
    std: Sequence[float] | None,
) -> NormalizedModel:
    """``model`` inside advkit's normalization (identity without mean/std)."""
    if not isinstance(model, nn.Module):
        raise ConfigError(f"fit's model must be a torch nn.Module, got {type(model).__name__}")
    if isinstance(model, NormalizedModel):
        if mean is not None or std is not None:
            raise ConfigError("the model already holds its normalization: drop mean= and std=")
        wrapped = model
    else:
        channels = input_shape[0]
        if (mean is None) != (std is None):
            raise ConfigError("pass mean= and std= together (one value per channel), or neither")
        wrapped = NormalizedModel(
            model, mean if mean is not None else (0.0,) * channels,
            std if std is not None else (1.0,) * channels,
        )  # fmt: skip
    return wrapped


def _probe(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """How many logits ``model`` returns, from one forward of two random images (eval mode)."""
    device = next((t.device for t in (*model.parameters(), *model.buffers())), None)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.rand(2, *input_shape, device=device))
    except Exception as exc:
        raise DataError(
            f"the model fails on a batch of the data's shape {(2, *input_shape)}: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or len(out) != 2 or out.shape[1] < 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(
            f"the model must return logits (N, classes) with at least 2 classes, got {shape} for "
            "a batch of 2; end it with a Linear layer to the number of classes"
        )
    return int(out.shape[1])
