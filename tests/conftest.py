"""Shared test fixtures: small real data, built once per session, and where that data is found.

Real data comes from two places, each looked up here and nowhere else:

- the shared folder of ``mnist.npz`` and ``cifar10.npz``: ``$ADVKIT_TEST_DATA``, else
  ``../shared/data`` beside the checkout (:func:`shared_data_dir`, :func:`shared_data_file`);
- Fashion-MNIST, where advkit itself reads it without ``--data-dir``: ``$ADVKIT_DATA`` or
  ``/usr/share/datasets/fashion-mnist`` (:func:`fashion_mnist_missing`).

A test whose data is absent is skipped with a message naming the variable and the folder looked in.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

#: The variable that points the tests at the shared real-data folder.
SHARED_DATA_ENV = "ADVKIT_TEST_DATA"
#: Its default: ``shared/data`` beside the checkout (``<repo>/../shared/data``).
DEFAULT_SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def shared_data_dir() -> Path:
    """The shared real-data folder: ``$ADVKIT_TEST_DATA`` when set, else ``../shared/data``."""
    env = os.environ.get(SHARED_DATA_ENV, "").strip()
    return Path(env).expanduser() if env else DEFAULT_SHARED_DATA


def _where() -> str:
    folder = shared_data_dir()
    if os.environ.get(SHARED_DATA_ENV, "").strip():
        return f"{folder} (from ${SHARED_DATA_ENV})"
    return f"{folder} (${SHARED_DATA_ENV} is not set; this is ../shared/data beside the checkout)"


def shared_data_file(name: str) -> Path:
    """``name`` (e.g. ``mnist.npz``) in the shared folder; skips the test, saying where it looked
    and which variable to set, when the file is not there."""
    path = shared_data_dir() / name
    if not path.is_file():
        pytest.skip(
            f"{name} not found in {_where()}: set ${SHARED_DATA_ENV} to the folder holding it"
        )
    return path


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The shared real-data folder; skips (saying where it looked) when it does not exist."""
    folder = shared_data_dir()
    if not folder.is_dir():
        pytest.skip(
            f"the shared data folder {_where()} does not exist: set ${SHARED_DATA_ENV} to the "
            "folder holding mnist.npz and cifar10.npz"
        )
    return folder


def fashion_mnist_missing() -> str | None:
    """Why advkit cannot read Fashion-MNIST without ``--data-dir`` (where it looked, what to
    do), or None when it can. For ``pytest.mark.skipif`` reasons and fixtures alike."""
    from advkit.data import DataNotFoundError, resolve_data_dir

    try:
        resolve_data_dir("fashion-mnist", None)
    except DataNotFoundError as error:
        return f"Fashion-MNIST missing: {error}"
    return None


_FASHION_MISSING = fashion_mnist_missing()
#: Marks tests (or modules, as ``pytestmark``) that read Fashion-MNIST the way advkit does.
requires_fashion_mnist = pytest.mark.skipif(
    _FASHION_MISSING is not None, reason=_FASHION_MISSING or ""
)


@pytest.fixture(scope="session")
def fashion_small():
    """A small Fashion-MNIST split: 512 train, 256 validation, the full test set."""
    from advkit.data import load_dataset

    if _FASHION_MISSING:
        pytest.skip(_FASHION_MISSING)
    return load_dataset("fashion-mnist", val_size=256, subset=512, seed=0)
