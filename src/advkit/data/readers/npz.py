"""``.npz`` files of x_train/y_train/x_test/y_test."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np

from advkit.data.errors import DataError, DataNotFoundError
from advkit.data.readers.common import Splits, check_labels

NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz_images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    """NHW, NHWC or NCHW images (uint8, or float in [0, 1]) as NCHW."""
    if x.dtype != np.uint8 and x.dtype.kind != "f":
        raise DataError(
            f"{path}: {key} has dtype {x.dtype}; store images as uint8 (0..255) or float in [0, 1]"
        )
    if x.dtype.kind == "f":
        _check_float_range(x, key, path)
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] in (1, 3):
        return x.transpose(0, 3, 1, 2)
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x
    raise DataError(
        f"{path}: {key} has shape {x.shape}; expected (N, H, W) or (N, H, W, C) with C 1 or 3"
    )


def _check_float_range(x: np.ndarray, key: str, path: Path) -> None:
    """Float images must be finite and in [0, 1]; 0..255 floats get told to divide by 255."""
    if x.size == 0:
        return
    low, high = float(np.min(x)), float(np.max(x))
    if np.isnan(low) or np.isnan(high):
        raise DataError(f"{path}: {key} holds NaN; float images must be finite, in [0, 1]")
    if low < 0.0 or high > 1.0:
        hint = (
            "they look like 0..255 pixels: divide by 255 (or store uint8)"
            if high > 1.0
            else "normalized already? store raw [0, 1] pixels"
        )
        raise DataError(f"{path}: {key} spans [{low:.3g}, {high:.3g}], not [0, 1]: {hint}")


def read_npz(path: Path, num_classes: int | None = None) -> Splits:
    """An ``.npz`` of images ``x_train``/``x_test`` (NHW or NHWC, uint8 or [0, 1]) and ``y_*``;
    one of ``x_test``/``y_test`` alone has an empty training split (enough to evaluate on)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            absent = [k for k in NPZ_KEYS if k not in archive.files]
            test_only = set(absent) == {"x_train", "y_train"}
            if absent and not test_only:
                raise DataError(
                    f"{path} lacks {', '.join(absent)} (it has {', '.join(archive.files)}); "
                    f"an .npz dataset needs {', '.join(NPZ_KEYS)} (x_test and y_test alone "
                    "serve evaluation)"
                )
            arrays = {k: archive[k] for k in NPZ_KEYS if k in archive.files}
    except DataError:
        raise
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path} is not a readable .npz archive ({exc}); recreate it") from exc
    if test_only:  # an empty training split, which only training refuses (load_dataset)
        x_test = arrays["x_test"]
        arrays["x_train"] = np.zeros((0, *x_test.shape[1:]), dtype=x_test.dtype)
        arrays["y_train"] = np.zeros(0, dtype=np.int64)
    splits = []
    for part in ("train", "test"):
        images = _npz_images(arrays[f"x_{part}"], f"x_{part}", path)
        labels = check_labels(arrays[f"y_{part}"], num_classes, f"{path} (y_{part})")
        if len(images) != len(labels):
            raise DataError(
                f"{path}: x_{part} holds {len(images)} images but y_{part} {len(labels)} labels"
            )
        splits.append((images, labels))
    return splits[0], splits[1]


def find_npz(path: Path) -> Path:
    """``path`` itself when it is a file, else the single ``.npz`` file inside the folder."""
    if path.is_file():
        return path
    found = sorted(path.glob("*.npz"))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) if found else "none"
        raise DataNotFoundError(
            f"{path} must hold exactly one .npz file (found {listed}); pass the file itself."
        )
    return found[0]


def load_npz_dataset(path: Path) -> Splits:
    return read_npz(find_npz(path))


def has_npz(path: Path) -> bool:
    if path.is_file():
        return path.suffix == ".npz"
    return path.is_dir() and len(list(path.glob("*.npz"))) == 1
