"""Fixtures for the data tests: standard-format files written from the shared real datasets.

The shared folder (``$ADVKIT_TEST_DATA``, else ``<repo>/../shared/data``: ``shared_data_file`` in
``tests/conftest.py``) holds MNIST and CIFAR-10 as .npz; the fixtures write them out in their
original release formats (idx, python pickles) once per session, so the readers are checked
against the real bytes and the published facts (class counts, mean/std).
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from tests.conftest import FASHION_DIR, shared_data_file


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write a uint8 array as an idx file (gzip when the name ends in .gz), like the originals."""
    magic = 2051 if array.ndim == 3 else 2049
    raw = struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.astype(np.uint8).tobytes()
    if path.suffix == ".gz":
        raw = gzip.compress(raw, compresslevel=1)
    path.write_bytes(raw)
    return path


def write_idx_set(folder: Path, arrays: dict[str, np.ndarray], gz: bool) -> Path:
    """The four MNIST files from x_train/y_train/x_test/y_test arrays."""
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    write_idx(folder / f"train-images-idx3-ubyte{ext}", arrays["x_train"])
    write_idx(folder / f"train-labels-idx1-ubyte{ext}", arrays["y_train"])
    write_idx(folder / f"t10k-images-idx3-ubyte{ext}", arrays["x_test"])
    write_idx(folder / f"t10k-labels-idx1-ubyte{ext}", arrays["y_test"])
    return folder


def write_cifar_batch(path: Path, images_nhwc: np.ndarray, labels: np.ndarray) -> Path:
    """A CIFAR-10 python batch: dict with b"data" (N, 3072) CHW rows and b"labels", protocol 2."""
    batch = {
        b"batch_label": path.name.encode(),
        b"labels": [int(v) for v in labels],
        b"data": np.ascontiguousarray(images_nhwc.transpose(0, 3, 1, 2)).reshape(-1, 3072),
    }
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=2)
    return path


def write_cifar10(root: Path, arrays: dict[str, np.ndarray]) -> Path:
    """``root/cifar-10-batches-py`` with five equal training batches and ``test_batch``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    x, y = arrays["x_train"], arrays["y_train"]
    for i, (xs, ys) in enumerate(zip(np.array_split(x, 5), np.array_split(y, 5), strict=True)):
        write_cifar_batch(folder / f"data_batch_{i + 1}", xs, ys)
    write_cifar_batch(folder / "test_batch", arrays["x_test"], arrays["y_test"])
    return root


def _shared(name: str) -> dict[str, np.ndarray]:
    with np.load(shared_data_file(name)) as archive:
        return {k: archive[k] for k in archive.files}


@pytest.fixture(scope="session")
def mnist_arrays() -> dict[str, np.ndarray]:
    return _shared("mnist.npz")


@pytest.fixture(scope="session")
def cifar10_arrays() -> dict[str, np.ndarray]:
    return _shared("cifar10.npz")


@pytest.fixture(scope="session")
def mnist_idx_dirs(tmp_path_factory, mnist_arrays) -> dict[str, Path]:
    """Real MNIST as idx files: all of it gzipped, and the first 2000/500 images uncompressed."""
    root = tmp_path_factory.mktemp("mnist")
    head = {k: v[:2000] if "train" in k else v[:500] for k, v in mnist_arrays.items()}
    return {
        "gz": write_idx_set(root / "gz", mnist_arrays, gz=True),
        "plain": write_idx_set(root / "plain", head, gz=False),
    }


@pytest.fixture(scope="session")
def cifar10_root(tmp_path_factory, cifar10_arrays) -> Path:
    """Real CIFAR-10 as the original pickles: the parent of ``cifar-10-batches-py``."""
    return write_cifar10(tmp_path_factory.mktemp("cifar10"), cifar10_arrays)


@pytest.fixture(scope="session")
def fashion_dir() -> Path:
    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(
            f"Fashion-MNIST absent from {FASHION_DIR}: apt-get install dataset-fashion-mnist"
        )
    return FASHION_DIR


def tiny_arrays(
    n_train: int = 30, n_test: int = 10, shape: tuple[int, ...] = (28, 28), classes: int = 10
) -> dict[str, np.ndarray]:
    """Small random uint8 images (N, *shape) and labels cycling through ``classes``."""
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (n_train, *shape), dtype=np.uint8),
        "y_train": (np.arange(n_train) % classes).astype(np.uint8),
        "x_test": rng.integers(0, 256, (n_test, *shape), dtype=np.uint8),
        "y_test": (np.arange(n_test) % classes).astype(np.uint8),
    }


@pytest.fixture
def make() -> SimpleNamespace:
    """The file writers above, for tests that build their own (often broken) files."""
    return SimpleNamespace(
        arrays=tiny_arrays,
        idx=write_idx,
        idx_set=write_idx_set,
        cifar_batch=write_cifar_batch,
        cifar10=write_cifar10,
    )


@pytest.fixture
def tiny_mnist_dir(tmp_path) -> Path:
    """A small synthetic MNIST-format folder (gzip idx), for the bad-input tests."""
    return write_idx_set(tmp_path / "mnist", tiny_arrays(), gz=True)


@pytest.fixture
def tiny_cifar_root(tmp_path) -> Path:
    """A small synthetic CIFAR-10 tree (2 images per training batch)."""
    return write_cifar10(tmp_path / "cifar", tiny_arrays(10, 4, (32, 32, 3)))


@pytest.fixture
def no_env(monkeypatch) -> None:
    """Run without $ADVKIT_DATA so only explicit folders and defaults count."""
    monkeypatch.delenv("ADVKIT_DATA", raising=False)
