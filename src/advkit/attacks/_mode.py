"""Context manager that sets a model's train/eval mode for an attack and restores it after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


@contextmanager
def attack_mode(model: nn.Module, train: bool = False) -> Iterator[nn.Module]:
    """Put every submodule in train (or eval) mode, then restore each one's own flag."""
    saved = [(module, module.training) for module in model.modules()]
    model.train(train)
    try:
        yield model
    finally:
        for module, was_training in saved:
            module.training = was_training
