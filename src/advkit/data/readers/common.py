"""What every reader shares: the array shapes they return, label checks, a named .npz."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from advkit.data.errors import DataError
from advkit.data.labels import class_indices

ArrayPair = tuple[np.ndarray, np.ndarray]
"""(images uint8 or float in [0, 1] (N, C, H, W), labels int64 (N,))."""

Splits = tuple[ArrayPair, ArrayPair]
"""(train, test)."""


def find_named_npz(root: Path, npz_name: str) -> Path | None:
    """``root`` itself when it is an .npz file, else ``root/<npz_name>.npz`` if present."""
    if root.is_file():
        return root if root.suffix == ".npz" else None
    candidate = root / f"{npz_name}.npz"
    return candidate if candidate.is_file() else None


def check_labels(labels: Any, num_classes: int | None, source: Path | str) -> np.ndarray:
    """Labels as a 1-D int64 array by the one rule of :func:`advkit.data.labels.class_indices`,
    refusing values outside [0, num_classes)."""
    labels = class_indices(labels, str(source))
    high = num_classes if num_classes is not None else np.iinfo(np.int64).max
    bad = np.flatnonzero((labels < 0) | (labels >= high))
    if bad.size:
        i = int(bad[0])
        limit = f"0..{num_classes - 1}" if num_classes is not None else "0 or more"
        raise DataError(
            f"{source}: label {labels[i]} at index {i} is outside {limit} ({bad.size} labels out "
            "of range); the file is corrupt or belongs to another dataset"
        )
    return labels
