"""Count the work a model does, in forward-equivalents, to size and report the sanity checks.

A forward pass of one image costs 1; one with gradients enabled costs 2, since an attack that
builds the graph then runs its backward pass, which costs about one more forward; and every call
costs ``CALL_COST`` more, the fixed overhead of a batch (on the CPU, one thread: about 7 images
of cnn-small, 2-3 of PreAct ResNet-18), which matters for attacks such as Square that query a
few points many times. Counting images and calls rather than seconds makes a budget that holds
on any machine, whatever else runs on it, and gives the same checks on every machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

#: Forward-equivalents of one call's fixed overhead, whatever its batch size.
CALL_COST = 4


@dataclass
class ForwardCount:
    """Calls of a model's forward and the images they received, without and with gradients."""

    calls: int = 0
    images: int = 0
    grad_images: int = 0

    @property
    def cost(self) -> int:
        """Forward-equivalents: an image with its backward counts twice, a call ``CALL_COST``."""
        return self.images + 2 * self.grad_images + CALL_COST * self.calls


@contextmanager
def count_forwards(model: nn.Module) -> Iterator[ForwardCount]:
    """Count the images every call of ``model`` receives while the block runs."""
    count = ForwardCount()

    def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
        inputs = args[0] if args else None
        size = len(inputs) if isinstance(inputs, Tensor) and inputs.dim() > 0 else 1
        count.calls += 1
        if torch.is_grad_enabled():
            count.grad_images += size
        else:
            count.images += size

    handle = model.register_forward_pre_hook(hook)
    try:
        yield count
    finally:
        handle.remove()
