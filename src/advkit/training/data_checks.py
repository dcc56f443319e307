"""Checks of the data a run trains on: splits that agree with themselves, and the same data
after a resume (a fingerprint in the checkpoint)."""

from __future__ import annotations

from typing import Any

import torch

from advkit.data import DataError, DataSplits


def check_splits(data: DataSplits) -> None:
    """Refuse splits whose images, labels and class facts disagree (e.g. labels >= num_classes)."""
    shapes = {
        tuple(part.images.shape[1:]) for part in (data.train, data.val, data.test) if len(part)
    }
    if len(shapes) > 1:
        raise DataError(f"the splits' images differ in shape (C, H, W): {sorted(shapes)}")
    channels = data.train.images.shape[1]
    if len(data.mean) != channels or len(data.std) != channels:
        raise DataError(
            f"mean and std need one value per channel ({channels}), got {len(data.mean)} and "
            f"{len(data.std)}"
        )
    if data.class_names is not None and len(data.class_names) != data.num_classes:
        raise DataError(
            f"{len(data.class_names)} class_names for num_classes={data.num_classes}: make them "
            "agree"
        )
    for name, part in (("train", data.train), ("val", data.val), ("test", data.test)):
        if (
            len(part)
            and not 0 <= int(part.labels.min()) <= int(part.labels.max()) < data.num_classes
        ):
            raise DataError(
                f"{name} labels span {int(part.labels.min())}..{int(part.labels.max())}, outside "
                f"0..{data.num_classes - 1} for num_classes={data.num_classes}: fix the labels or "
                "num_classes"
            )


def fingerprint(data: DataSplits) -> dict[str, Any]:
    """What identifies the training data, order included: a resumed run must read the same."""
    train = data.train
    n = len(train)
    weights = torch.arange(1, n + 1, device=train.device)  # order-sensitive checksums
    images = train.images.reshape(n, -1)
    if images.is_floating_point():  # the exact bits, so float data is compared exactly too
        images = images.view(torch.int32)
    per_image = images.sum(dim=1, dtype=torch.int64)
    return {
        "dataset": data.dataset, "num_classes": data.num_classes,
        "input_shape": list(train.images.shape[1:]), "train": n, "val": len(data.val),
        "images": int((per_image * weights).sum()), "labels": int((train.labels * weights).sum()),
    }  # fmt: skip


def check_same_data(now: dict[str, Any], recorded: dict[str, Any] | None, where: str) -> None:
    """Refuse to resume on other data than the checkpoint's (``recorded`` None: an old one)."""
    if recorded is None:
        return
    differ = [
        f"other training {k}" if k in ("images", "labels") else f"{k} {now[k]} (the run's: {v})"
        for k, v in recorded.items()
        if now.get(k) != v
    ]
    if differ:
        raise DataError(
            f"the data read from {where} is not the data this run was trained on: "
            f"{', '.join(differ)}; pass the run's data with --data-dir"
        )
