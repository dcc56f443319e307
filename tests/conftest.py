"""Shared test fixtures: small real data, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config: pytest.Config) -> None:
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def fashion_small():
    """A small Fashion-MNIST split: 512 train, 256 validation, the full test set."""
    from advkit.data import load_dataset

    if not (FASHION_DIR / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Fashion-MNIST missing: apt-get install dataset-fashion-mnist")
    return load_dataset("fashion-mnist", val_size=256, subset=512, seed=0)
