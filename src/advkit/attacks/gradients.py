"""The one place attacks (and the checks and analyses beside them) take input gradients.

A model whose output has no autograd path to its input (a forward under ``torch.no_grad()``, or
one that detaches its input) gives no gradient at all; torch then raises ("element 0 of tensors
does not require grad", or "appears to not have been used in the graph"). To an attack that is
a zero gradient: it cannot move, the black-box attacks still can, and the gradient-masking check
(``advkit.evaluation.checks``) says why. Telling the two apart costs one attribute read, and
``allow_unused`` nothing, so the usual path is as fast as a bare ``torch.autograd.grad``.

Under float16 autocast the backward of an attack runs in float16, whose smallest value is 2**-24:
the input gradient of a confidently classified sample flushes to zero and the attack does not
move it. Inside :func:`loss_scaled` (the trainer's fp16 steps) the loss is multiplied by a scale
before the backward and the gradient divided by it after (Micikevicius et al., "Mixed Precision
Training", ICLR 2018, arXiv:1710.03740); an entry that overflowed comes back 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import torch
from torch import Tensor

from advkit.errors import UserError

#: Why a model without an autograd path from its output to its input gives no input gradient.
NO_INPUT_GRAPH = (
    "the model's output does not depend on its input through autograd: its forward runs under "
    "torch.no_grad() or detaches the input (or a tensor made from it)"
)


#: The loss scale of input gradients in this context (None: unscaled); see :func:`loss_scaled`.
_LOSS_SCALE: ContextVar[Tensor | float | None] = ContextVar("advkit_loss_scale", default=None)


@contextmanager
def loss_scaled(scale: Tensor | float | None) -> Iterator[None]:
    """Within the block, input gradients are taken of ``scale`` times the loss, then divided by
    ``scale`` (a positive number, or a 0-dim tensor on the device: no host sync); entries that
    overflowed (inf or NaN) come back 0, no step along them. None: unscaled, as outside.

    For float16 autocast (see the module docstring): the trainer passes GradScaler's scale per
    sample, so an attack's backward sees the magnitudes of the weight update's own backward,
    which the GradScaler keeps from overflowing."""
    token = _LOSS_SCALE.set(scale)
    try:
        yield
    finally:
        _LOSS_SCALE.reset(token)


def input_gradient_or_none(
    loss: Tensor, inputs: Tensor, *, create_graph: bool = False
) -> Tensor | None:
    """Gradient of the scalar ``loss`` with respect to ``inputs`` (which requires grad), or None
    when the loss has no autograd path to ``inputs``; loss-scaled inside :func:`loss_scaled`."""
    if not loss.requires_grad:
        return None
    scale = _LOSS_SCALE.get()
    if scale is not None:
        loss = loss * scale
    (grad,) = torch.autograd.grad(loss, inputs, create_graph=create_graph, allow_unused=True)
    if grad is None or scale is None:
        return grad
    grad = grad / scale
    return torch.where(grad.isfinite(), grad, 0.0)


def input_gradient(loss: Tensor, inputs: Tensor, *, create_graph: bool = False) -> Tensor:
    """Gradient of the scalar ``loss`` with respect to ``inputs``: zeros where the loss has no
    autograd path to them (see the module docstring)."""
    grad = input_gradient_or_none(loss, inputs, create_graph=create_graph)
    return torch.zeros_like(inputs) if grad is None else grad


class NoInputGradientError(UserError, ValueError):
    """An input gradient is needed (not just followed, as attacks do) and the model gives none."""


def require_input_gradient(
    loss: Tensor, inputs: Tensor, *, purpose: str, create_graph: bool = False
) -> Tensor:
    """Gradient of the scalar ``loss`` with respect to ``inputs``; NoInputGradientError naming
    ``purpose`` (e.g. "GradAlign") when the loss has no autograd path to them."""
    grad = input_gradient_or_none(loss, inputs, create_graph=create_graph)
    if grad is None:
        raise NoInputGradientError(
            f"{purpose} needs the model's input gradient, but {NO_INPUT_GRAPH}: run the forward "
            "with gradients enabled and without detaching the input"
        )
    return grad
