"""Checks of the data a run trains on: splits that agree with themselves, and the same data
after a resume (a fingerprint in the checkpoint)."""

from __future__ import annotations

from typing import Any

import torch

from advkit.data import DataError, DataSplits, StreamingSplits, image_shape


def check_splits(data: DataSplits | StreamingSplits) -> None:
    """Refuse splits whose images, labels and class facts disagree (e.g. labels >= num_classes);
    in memory or streamed (whose labels are known without decoding)."""
    parts = [("train", data.train), ("val", data.val), ("test", data.test)]
    parts = [(name, part) for name, part in parts if part is not None]
    shapes = {image_shape(part) for _, part in parts if len(part)}
    if len(shapes) > 1:
        raise DataError(f"the splits' images differ in shape (C, H, W): {sorted(shapes)}")
    channels = image_shape(data.train)[0]
    if data.mean is not None and (len(data.mean) != channels or len(data.std) != channels):
        raise DataError(
            f"mean and std need one value per channel ({channels}), got {len(data.mean)} and "
            f"{len(data.std)}"
        )
    if data.class_names is not None and len(data.class_names) != data.num_classes:
        raise DataError(
            f"{len(data.class_names)} class_names for num_classes={data.num_classes}: make them "
            "agree"
        )
    for name, part in parts:
        if (
            len(part)
            and not 0 <= int(part.labels.min()) <= int(part.labels.max()) < data.num_classes
        ):
            raise DataError(
                f"{name} labels span {int(part.labels.min())}..{int(part.labels.max())}, outside "
                f"0..{data.num_classes - 1} for num_classes={data.num_classes}: fix the labels or "
                "num_classes"
            )


#: Fingerprint keys that say what the examples are, each path its own: in memory a checksum of
#: the pixels ("images"), streamed what identifies the items without decoding them ("files").
#: Compared when both fingerprints have the key (a run from before streaming recorded pixels).
CONTENT_KEYS = ("images", "files")


def fingerprint(data: DataSplits | StreamingSplits) -> dict[str, Any]:
    """What identifies the training data, order included: a resumed run must read the same.

    Streamed splits (image folders, Datasets) are identified without decoding: the files' names,
    sizes and labels, so a run may resume on the other path (in memory, streamed) of the same
    source."""
    train = data.train
    n = len(train)
    weights = torch.arange(1, n + 1, device=train.labels.device)  # order-sensitive checksums
    if isinstance(data, StreamingSplits):
        content = {"files": train.identity()}
    else:
        images = train.images.reshape(n, -1)
        if images.is_floating_point():  # the exact bits, so float data is compared exactly too
            images = images.view(torch.int32)
        per_image = images.sum(dim=1, dtype=torch.int64)
        content = {"images": int((per_image * weights).sum())}
    return {
        "dataset": data.dataset, "num_classes": data.num_classes,
        "input_shape": list(image_shape(train)), "train": n, "val": len(data.val),
        **content, "labels": int((train.labels * weights).sum()),
    }  # fmt: skip


def check_same_data(now: dict[str, Any], recorded: dict[str, Any] | None, where: str) -> None:
    """Refuse to resume on other data than the checkpoint's (``recorded`` None: an old one)."""
    if recorded is None:
        return
    compared = {k: v for k, v in recorded.items() if k in now or k not in CONTENT_KEYS}
    named = (*CONTENT_KEYS, "labels")
    differ = [
        f"other training {k}" if k in named else f"{k} {now[k]} (the run's: {v})"
        for k, v in compared.items()
        if now.get(k) != v
    ]
    if differ:
        raise DataError(
            f"the data read from {where} is not the data this run was trained on: "
            f"{', '.join(differ)}; pass the run's data with --data-dir"
        )
