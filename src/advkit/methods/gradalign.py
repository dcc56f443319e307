"""FGSM training with the GradAlign regularizer (Andriushchenko & Flammarion, "Understanding and
Improving Fast Adversarial Training", NeurIPS 2020, arXiv:2007.02617).

Each batch: FGSM from zero of ``step_size`` (default eps) along the input gradient at x, one
weight update on CE(x + delta) + lambda * (1 - mean_i cos(grad_x l(x_i), grad_x l(x_i + eta_i))),
eta uniform in the eps-ball. The regularizer keeps the loss locally linear, which prevents the
catastrophic overfitting of plain FGSM training at large eps. Both input gradients keep their
graph (double backprop), so the regularizer is differentiated exactly as written in the paper;
the authors' code detaches the gradient at x, which saves one double backward. Samples whose
gradient is zero are left out of the mean, as in that code (the cosine is
:func:`advkit.alignment.gradient_cosines`, shared with the measurements). Pixel units, inputs in
[0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from advkit.alignment import gradient_cosines, input_gradient
from advkit.methods.base import METHODS, Method, StepContext, StepOutput
from advkit.threat import get_threat


@METHODS.register(
    "gradalign",
    description="FGSM training with the GradAlign regularizer against "
    "catastrophic overfitting (Andriushchenko & Flammarion 2020)",
)
class GradAlignTraining(Method):
    """FGSM + GradAlign weighted by ``grad_align_lambda`` (0: plain zero-init FGSM training)."""

    def __init__(
        self, *, grad_align_lambda: float = 0.2, step_size: float | None = None, **base: Any
    ) -> None:
        super().__init__(**base)
        if grad_align_lambda < 0:
            raise ValueError(f"grad_align_lambda must be >= 0, got {grad_align_lambda}")
        if step_size is not None and step_size <= 0:
            raise ValueError(
                f"step_size must be > 0 (pixel units), or None for eps; got {step_size}"
            )
        self.grad_align_lambda = grad_align_lambda
        self.step_size = step_size

    @classmethod
    def config_kwargs(cls, config: Any) -> dict[str, Any]:
        return super().config_kwargs(config) | {
            "grad_align_lambda": config.grad_align_lambda,
            "step_size": config.step_size,
        }

    def step(self, inputs: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        threat = get_threat(self.norm)
        step_size = (ctx.eps if self.step_size is None else self.step_size) * self.step_scale
        regularize = self.grad_align_lambda > 0
        if regularize and hasattr(ctx.attack_model, "_orig_mod"):  # a torch.compile'd module
            raise ValueError(
                "gradalign differentiates input gradients (double backprop), which torch.compile "
                "does not support: train gradalign without compile"
            )
        # Gradient passes use the unwrapped model in its current (train) mode, as in the paper's
        # code; their weight gradients reach the parameters through the one backward below.
        grad_x = input_gradient(
            ctx.attack_model, inputs, torch.zeros_like(inputs), labels, regularize
        )
        with torch.no_grad():
            delta = threat.ascent(torch.zeros_like(inputs), grad_x, step_size)
            delta = threat.project(delta, inputs, ctx.eps)
        logits = ctx.model(inputs + delta)
        loss = self.criterion(logits, labels)
        metrics: dict[str, Tensor] = {}
        if regularize:
            eta = threat.random_init(inputs, ctx.eps, ctx.noise)
            grad_eta = input_gradient(ctx.attack_model, inputs, eta, labels, create_graph=True)
            misalignment, mean_cos = _misalignment(grad_x, grad_eta)
            regularizer = self.grad_align_lambda * misalignment
            loss = loss + regularizer
            metrics = {"grad_align_reg": regularizer.detach(), "grad_align_cos": mean_cos.detach()}
        ctx.optimize(loss)
        return StepOutput(loss=loss.detach(), logits=logits.detach(), metrics=metrics)


def _misalignment(grad_a: Tensor, grad_b: Tensor) -> tuple[Tensor, Tensor]:
    """Mean of 1 - cos and mean cos over the samples where both gradients are nonzero."""
    cos, valid = gradient_cosines(grad_a, grad_b)
    valid = valid.float()
    count = valid.sum().clamp_min(1.0)  # a tensor: no host sync
    return ((1 - cos) * valid).sum() / count, (cos * valid).sum() / count
