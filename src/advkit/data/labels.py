"""The one rule for labels, whatever carries them (tensors, numpy arrays, .npz files, Datasets).

Labels are class indices 0..C-1: integers of any dtype, booleans (0/1), or floats holding whole
numbers (``2.0``), all converted to int64. Fractional or non-finite floats, strings and other
objects are refused, as are negative values; :func:`check_label_range` refuses values beyond the
classes a model or dataset has, saying which values and how many, and how to remap them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from advkit.data.errors import DataError


def class_indices(values: Any, what: str, count: int | None = None) -> np.ndarray:
    """``values`` as a 1-D int64 array of class indices (a Keras-style (N, 1) column is
    flattened), or a one-line DataError naming ``what`` and the offending value.
    ``count``: how many labels there must be (one per image)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if count is not None and (array.ndim != 1 or len(array) != count):
        raise DataError(f"{what}: {count} images need {count} labels (N,), got {array.shape}")
    if array.ndim != 1:
        raise DataError(f"{what}: labels must be a 1-D array (N,), got shape {array.shape}")
    if array.dtype.kind == "f":
        array = _whole_floats(array, what)
    elif array.dtype.kind not in "iub":
        raise DataError(
            f"{what}: labels must be class indices 0..C-1 (integers), got dtype {array.dtype}; "
            "map class names to indices"
        )
    array = array.astype(np.int64)
    negative = np.flatnonzero(array < 0)
    if negative.size:
        i = int(negative[0])
        raise DataError(
            f"{what}: label {array[i]} at index {i} is negative ({negative.size} of {len(array)} "
            "labels); labels are class indices 0..C-1: remap them"
        )
    return array


def class_index(value: Any, what: str) -> int:
    """One label (an item of a Dataset) by the rule of :func:`class_indices`."""
    try:
        array = np.asarray(value.item() if isinstance(value, torch.Tensor) else value)
    except (TypeError, ValueError, RuntimeError):
        array = np.asarray(None)
    if array.ndim != 0 or array.dtype.kind not in "iubf":
        raise DataError(f"{what} has label {value!r}; labels must be class indices 0..C-1 (ints)")
    number = array.item()
    if array.dtype.kind == "f" and not (np.isfinite(number) and number == round(number)):
        raise DataError(
            f"{what} has label {number!r}, which is not a whole number; labels are class "
            "indices 0..C-1: round or remap them"
        )
    if number < 0:
        raise DataError(f"{what} has label {int(number)}; labels are class indices 0..C-1")
    return int(number)


def _whole_floats(array: np.ndarray, what: str) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(array) | (array != np.round(array)))
    if bad.size:
        i = int(bad[0])
        raise DataError(
            f"{what}: label {float(array[i])!r} at index {i} is not a whole number ({bad.size} of "
            f"{len(array)} labels); labels are class indices 0..C-1: round or remap them"
        )
    return array


def check_label_range(labels: Any, num_classes: int, what: str, owner: str) -> None:
    """Refuse labels at or beyond ``num_classes``: which values, how many, and how to remap.
    ``owner`` says where the count comes from ("the model has 10 outputs", "num_classes=10")."""
    array = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    beyond = array >= num_classes
    if not beyond.any():
        return
    count = int(beyond.sum())
    low, high = int(array.min()), int(array.max())
    outside = np.unique(array[beyond])
    shown = ", ".join(str(v) for v in outside[:5]) + (", ..." if len(outside) > 5 else "")
    # An offset range (5..14 for 10 classes) is shifted; other gaps are the caller's to map.
    remap = f" (e.g. subtract {low})" if high - low + 1 == num_classes else ""
    raise DataError(
        f"{what}: {count} of {len(array)} labels ({shown}) are outside 0..{num_classes - 1} "
        f"({owner}; the labels span {low}..{high}): remap them to 0..{num_classes - 1}{remap}"
    )
