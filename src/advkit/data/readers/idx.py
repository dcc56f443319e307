"""MNIST / Fashion-MNIST idx files (gzip or not, detected by content)."""

from __future__ import annotations

import gzip
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from advkit.data.errors import DataError, DataNotFoundError
from advkit.data.readers.common import ArrayPair, Splits, check_labels, find_named_npz
from advkit.data.readers.npz import read_npz

IDX_IMAGES_MAGIC = 2051  # 0x0803: unsigned bytes, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x0801: unsigned bytes, 1 dimension
IDX_STEMS = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
_GZIP_MAGIC = b"\x1f\x8b"


def _read_maybe_gzip(path: Path) -> bytes:
    """The file's bytes, decompressed when it is gzip (detected by content, not by name)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(
            f"{path} is a corrupt or truncated gzip file ({exc}); download it again"
        ) from exc


def read_idx(path: Path, magic: int) -> np.ndarray:
    """An idx array of unsigned bytes; ``magic`` is 2051 for image files, 2049 for label files."""
    raw = _read_maybe_gzip(path)
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    kind = "images" if magic == IDX_IMAGES_MAGIC else "labels"
    if len(raw) < header:
        raise DataError(
            f"{path} is too short ({len(raw)} bytes) to be an idx {kind} file; download it again"
        )
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(
            f"{path} has magic number {found}, expected {magic} for idx {kind}; "
            "is it the right file (images and labels swapped, or not an idx file)?"
        )
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + math.prod(dims)
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "longer than its header says"
        raise DataError(
            f"{path} is {what}: its header says {'x'.join(map(str, dims))} ({expected} bytes) "
            f"but it has {len(raw)} bytes; download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find_idx_file(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def locate_idx(root: Path, subdirs: Sequence[str] = ()) -> dict[str, Path] | None:
    """The four idx files in ``root`` (or one of its ``subdirs``), or None if no folder has all."""
    for folder in (root, *(root / sub for sub in subdirs)):
        found = {stem: _find_idx_file(folder, stem) for stem in IDX_STEMS}
        if all(found.values()):
            return found  # type: ignore[return-value]
    return None


def read_idx_pair(images_path: Path, labels_path: Path, num_classes: int | None) -> ArrayPair:
    """One split from an idx image file and its label file, checked against each other."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels; both files must come from the same release"
        )
    return images[:, None], check_labels(labels, num_classes, labels_path)


def load_idx_dataset(
    root: Path, *, num_classes: int, npz_name: str, subdirs: Sequence[str] = ()
) -> Splits:
    """MNIST-format idx files (gzip or plain) in ``root``, else ``root/<npz_name>.npz``."""
    files = locate_idx(root, subdirs)
    if files is None:
        npz = find_named_npz(root, npz_name)
        if npz is not None:
            return read_npz(npz, num_classes)
        missing = [s + "[.gz]" for s in IDX_STEMS if _find_idx_file(root, s) is None]
        raise DataNotFoundError(
            f"no {npz_name} files in {root}: missing {', '.join(missing)} (or {npz_name}.npz)."
        )
    train = read_idx_pair(files[IDX_STEMS[0]], files[IDX_STEMS[1]], num_classes)
    test = read_idx_pair(files[IDX_STEMS[2]], files[IDX_STEMS[3]], num_classes)
    return train, test


def has_idx_dataset(root: Path, *, npz_name: str, subdirs: Sequence[str] = ()) -> bool:
    return locate_idx(root, subdirs) is not None or find_named_npz(root, npz_name) is not None
