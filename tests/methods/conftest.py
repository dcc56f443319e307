"""Fixtures for the training-method tests (helpers live in methods_support.py)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch import Tensor

from tests.conftest import shared_data_file


@pytest.fixture(scope="session")
def mnist_subset() -> tuple[Tensor, Tensor]:
    """512 MNIST training images in [0, 1], shape (512, 1, 28, 28), and their labels."""
    with np.load(shared_data_file("mnist.npz")) as data:
        images, labels = data["x_train"][:512], data["y_train"][:512]
    inputs = torch.from_numpy(images).float().div_(255).unsqueeze(1)
    return inputs, torch.from_numpy(labels).long()


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """These models are tiny: one thread is as fast, and spares the other processes' cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
