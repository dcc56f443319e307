"""A user's model as a file of their own (not registered in advkit), and tiny data to train it on.

Shared by the tests of ``--model file.py:factory`` (tests/models, tests/cli) and of evaluating a
model advkit did not train (tests/evaluation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

#: A small CNN and a few factories, each failing in its own way.
TINY_CNN = '''
import torch
from torch import nn

WIDTH = 4


class TinyCNN(nn.Module):
    def __init__(self, num_classes, in_channels=1, width=WIDTH):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean((2, 3)))


def build(num_classes: int, in_channels: int, width: int = WIDTH) -> nn.Module:
    return TinyCNN(num_classes, in_channels, width)


def ten_classes(width: int = WIDTH) -> nn.Module:
    """Takes neither num_classes nor in_channels: fixed to 10 classes, 1 channel."""
    return TinyCNN(10, 1, width)


def anything(**kwargs) -> nn.Module:
    return TinyCNN(kwargs["num_classes"], kwargs["in_channels"], kwargs.get("width", WIDTH))


def fails(num_classes: int, width: int = 4) -> nn.Module:
    raise ValueError(f"width {width} is too narrow")


def needs_depth(num_classes: int, depth: int) -> nn.Module:
    return TinyCNN(num_classes)


def not_a_module(num_classes: int) -> tuple:
    return (num_classes,)


def wrong_output(num_classes: int) -> nn.Module:
    return TinyCNN(num_classes + 1)


def wrong_input(num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(5, num_classes))
'''

#: Classes and image size of :func:`tiny_npz`.
NUM_CLASSES = 10
SIZE = 12


def write_model(folder: Path, name: str = "my_net.py") -> Path:
    """The user's model file ``folder/name``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(TINY_CNN)
    return path


def tiny_npz(path: Path, n: int = 96, seed: int = 0) -> Path:
    """An .npz dataset (x_train/y_train/x_test/y_test) of ``n`` random 12x12 uint8 images."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, SIZE, SIZE), dtype=np.uint8)
    labels = np.arange(n) % NUM_CLASSES
    np.savez(path, x_train=images, y_train=labels, x_test=images, y_test=labels)
    return path
