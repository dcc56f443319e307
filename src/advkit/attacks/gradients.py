"""The one place attacks (and the checks and analyses beside them) take input gradients.

A model whose output has no autograd path to its input (a forward under ``torch.no_grad()``, or
one that detaches its input) gives no gradient at all; torch then raises ("element 0 of tensors
does not require grad", or "appears to not have been used in the graph"). To an attack that is
a zero gradient: it cannot move, the black-box attacks still can, and the gradient-masking check
(``advkit.evaluation.checks``) says why. Telling the two apart costs one attribute read, and
``allow_unused`` nothing, so the usual path is as fast as a bare ``torch.autograd.grad``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from advkit.errors import UserError

#: Why a model without an autograd path from its output to its input gives no input gradient.
NO_INPUT_GRAPH = (
    "the model's output does not depend on its input through autograd: its forward runs under "
    "torch.no_grad() or detaches the input (or a tensor made from it)"
)


def input_gradient_or_none(
    loss: Tensor, inputs: Tensor, *, create_graph: bool = False
) -> Tensor | None:
    """Gradient of the scalar ``loss`` with respect to ``inputs`` (which requires grad), or None
    when the loss has no autograd path to ``inputs``."""
    if not loss.requires_grad:
        return None
    (grad,) = torch.autograd.grad(loss, inputs, create_graph=create_graph, allow_unused=True)
    return grad


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
