"""CIFAR-10/100 python pickle batches, read by an unpickler that refuses every global but
numpy's array constructors (a pickle cannot run code here)."""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from advkit.data.errors import DataError, DataNotFoundError
from advkit.data.readers.common import ArrayPair, Splits, check_labels, find_named_npz
from advkit.data.readers.npz import read_npz


class RefusedGlobalError(pickle.UnpicklingError):
    """A pickle named a function or class outside the allow-list."""


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``codecs.encode`` limited to latin-1: how protocol-2 pickles from Python 3 store bytes."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise RefusedGlobalError(f"refusing codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding)


_RECONSTRUCT = np.empty(0).__reduce__()[0]  # numpy's array rebuilder, whatever module holds it
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
    ("codecs", "encode"): _latin1_encode,
}


class CifarUnpickler(pickle.Unpickler):
    """Unpickler that builds only what CIFAR files hold (dicts, lists, bytes, numpy arrays).

    Plain ``pickle.load`` calls whatever function a file names, so a tampered download could run
    code; this one refuses every global outside a short allow-list.
    """

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise RefusedGlobalError(
                f"refusing to load {module}.{name}: CIFAR files only hold dicts, lists, bytes "
                "and numpy arrays"
            ) from None


def read_cifar_pickle(path: Path) -> dict[Any, Any]:
    """One CIFAR pickle file as a dict, read with :class:`CifarUnpickler`."""
    try:
        with path.open("rb") as f:
            obj = CifarUnpickler(f, encoding="bytes").load()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except RefusedGlobalError as exc:
        raise DataError(f"{path} is not a safe CIFAR pickle: {exc}") from exc
    except Exception as exc:  # corrupt pickles raise many types (EOFError, KeyError, struct...)
        raise DataError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
            "download and extract the archive again"
        ) from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path} holds a {type(obj).__name__}, expected a dict of CIFAR arrays")
    return obj


def _entry(batch: dict[Any, Any], key: str, path: Path) -> Any:
    for k in (key.encode(), key):  # Python 2 files have bytes keys; re-pickled ones may have str
        if k in batch:
            return batch[k]
    names = ", ".join(repr(k) for k in batch)
    raise DataError(f"{path} has no {key!r} entry (it has {names}); is it a CIFAR batch file?")


def read_cifar_batch(path: Path, label_key: str, num_classes: int) -> ArrayPair:
    """One CIFAR batch: ``data`` (N, 3072) uint8 rows in CHW order and its label list."""
    batch = read_cifar_pickle(path)
    data = _entry(batch, "data", path)
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3 * 32 * 32
    ):
        desc = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {desc}")
    labels = _entry(batch, label_key, path)
    if len(labels) != len(data):
        raise DataError(
            f"{path} holds {len(data)} images but {len(labels)} labels; the file is corrupt"
        )
    return data.reshape(-1, 3, 32, 32), check_labels(labels, num_classes, path)


def _cifar_folder(root: Path, subdir: str, files: Sequence[str]) -> Path | None:
    """``root`` or ``root/subdir``, whichever holds the first of ``files``."""
    for folder in (root, root / subdir):
        if (folder / files[0]).is_file():
            return folder
    return None


def _load_cifar(
    root: Path,
    *,
    subdir: str,
    train_files: Sequence[str],
    test_file: str,
    label_key: str,
    num_classes: int,
    npz_name: str,
) -> Splits:
    folder = _cifar_folder(root, subdir, train_files)
    if folder is None:
        npz = find_named_npz(root, npz_name)
        if npz is not None:
            return read_npz(npz, num_classes)
        raise DataNotFoundError(
            f"no {npz_name} files in {root}: expected {subdir}/{train_files[0]} (the folder "
            f"extracted from the python-version archive, or its parent) or {npz_name}.npz."
        )
    missing = [n for n in (*train_files, test_file) if not (folder / n).is_file()]
    if missing:
        raise DataNotFoundError(
            f"{folder} is incomplete: missing {', '.join(missing)}; extract the archive again."
        )
    parts = [read_cifar_batch(folder / n, label_key, num_classes) for n in train_files]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return train, read_cifar_batch(folder / test_file, label_key, num_classes)


CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))


def load_cifar10(root: Path) -> Splits:
    """CIFAR-10 from ``cifar-10-batches-py`` (or its parent), else ``root/cifar10.npz``."""
    return _load_cifar(
        root,
        subdir="cifar-10-batches-py",
        train_files=CIFAR10_TRAIN,
        test_file="test_batch",
        label_key="labels",
        num_classes=10,
        npz_name="cifar10",
    )


def load_cifar100(root: Path) -> Splits:
    """CIFAR-100 (fine labels) from ``cifar-100-python`` (or its parent), else ``cifar100.npz``."""
    return _load_cifar(
        root,
        subdir="cifar-100-python",
        train_files=("train",),
        test_file="test",
        label_key="fine_labels",
        num_classes=100,
        npz_name="cifar100",
    )


def has_cifar(root: Path, *, subdir: str, first_file: str, npz_name: str) -> bool:
    return (
        _cifar_folder(root, subdir, (first_file,)) is not None
        or find_named_npz(root, npz_name) is not None
    )


def cifar100_class_names(root: Path) -> list[str] | None:
    """The fine label names from ``cifar-100-python/meta``, or None when that file is absent."""
    folder = _cifar_folder(root, "cifar-100-python", ("meta",))
    if folder is None:
        return None
    names = _entry(read_cifar_pickle(folder / "meta"), "fine_label_names", folder / "meta")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names]
