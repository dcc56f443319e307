"""MACER (Zhai et al., "MACER: Attack-free and Scalable Robust Training via Maximizing Certified
Radius", ICLR 2020, arXiv:2001.02378): training that maximizes the smoothed classifier's certified
radius, without an attack.

Each batch: ``num_noise`` (k, default 16) noisy copies of every image, noise N(0, sigma^2 I), in
one forward. The loss is the cross-entropy of the soft smoothed classifier, -log(mean_i softmax(f(x
+ n_i)))_y (1e-10 added inside the log, as the paper's code), plus ``macer_lambda`` times the hinge
on the certified radius of the samples it classifies correctly: with p the mean of
softmax(``macer_beta`` * logits) over the copies, p_A its top and p_B its second probability, sigma
/ 2 * max(0, ``macer_gamma`` - (Phi^-1(p_A) - Phi^-1(p_B))), counted for the samples whose top
class is the label and whose gap is finite and within gamma (the paper's code); every term divided
by the batch size. Defaults are the paper's code's: k 16, lambda 12, gamma 8, beta 16 (Jeong &
Shin's MNIST runs of MACER: lambda 16, 6 at sigma 1.0), lr 0.01: higher, the hinge's gradients
(Phi^-1 steepens as p_A nears 1, times lambda 12) make training diverge (measured on MNIST, a CNN
of 2 convolutions, batches of 64, SGD momentum 0.9, k 4: at lr 0.05 the hinge, once on, drives the
cross-entropy to 20 and accuracy to chance within 100 steps; at lr 0.01 the same run learns, 72%
training accuracy after 160 steps with the hinge on from the first): give ``--lr 0.01`` (advkit's
default is 0.1). ``macer_deferred_epochs`` N leaves the hinge out of the first N passes, as Jeong &
Shin's MNIST runs of MACER do (``--deferred``: until the first learning-rate drop, a third of the
run); 0, the paper's code, never defers. The masks are multiplications, never indexing, so the step
never waits on the host. ``sigma`` in [0, 1] pixel units, the noisy images unclipped unless
``noise_clip``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advkit.methods.base import METHODS, StepContext, StepOutput
from advkit.methods.smoothing import SmoothingMethod


@METHODS.register(
    "macer",
    description="MACER: the smoothed classifier's cross-entropy plus a hinge on its certified "
    "radius over --num-noise copies, no attack (Zhai et al. 2020)",
)
class MACERTraining(SmoothingMethod):
    """Soft smoothed cross-entropy + lambda * sigma/2 * hinge(gamma - certified-radius gap)."""

    name = "macer"

    def __init__(
        self,
        *,
        num_noise: int = 16,
        macer_lambda: float = 12.0,
        macer_gamma: float = 8.0,
        macer_beta: float = 16.0,
        macer_deferred_epochs: int = 0,
        **base: Any,
    ) -> None:
        super().__init__(num_noise=num_noise, **base)
        for name, value in (("macer_lambda", macer_lambda), ("macer_gamma", macer_gamma),
                            ("macer_beta", macer_beta)):  # fmt: skip
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if macer_beta == 0:
            raise ValueError("macer_beta (the softmax's inverse temperature) must be > 0, got 0")
        if macer_deferred_epochs < 0:
            raise ValueError(f"macer_deferred_epochs must be >= 0, got {macer_deferred_epochs}")
        self.macer_lambda = macer_lambda
        self.macer_deferred_epochs = macer_deferred_epochs
        self.macer_gamma = macer_gamma
        self.macer_beta = macer_beta

    @classmethod
    def config_kwargs(cls, config: Any) -> dict[str, Any]:
        return super().config_kwargs(config) | {
            "macer_lambda": config.macer_lambda,
            "macer_gamma": config.macer_gamma,
            "macer_beta": config.macer_beta,
            "macer_deferred_epochs": config.macer_deferred_epochs,
        }

    def step(self, inputs: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        noisy = self.noisy(inputs, self.draw_noise(inputs, ctx))
        logits = ctx.model(noisy).float().unflatten(0, (len(inputs), self.num_noise))
        mean_probs = F.softmax(logits, dim=2).mean(dim=1)
        classification = F.nll_loss(torch.log(mean_probs + 1e-10), labels)
        robustness = self.radius_hinge(logits, labels)
        weight = self.macer_lambda if ctx.epoch >= self.macer_deferred_epochs else 0.0
        loss = classification + weight * robustness
        ctx.optimize(loss)
        metrics = {"macer_classification": classification.detach(),
                   "macer_robustness": robustness.detach()}  # fmt: skip
        return StepOutput(loss=loss.detach(), logits=mean_probs.detach().log(), metrics=metrics)

    def radius_hinge(self, logits: Tensor, labels: Tensor) -> Tensor:
        """sigma / 2 * the batch mean of the hinge max(0, gamma - (Phi^-1(p_A) - Phi^-1(p_B)))
        over the samples classified correctly with a finite gap within gamma (0 for the rest),
        from the (N, k, C) logits."""
        probs = F.softmax(self.macer_beta * logits, dim=2).mean(dim=1)
        top, classes = probs.topk(2, dim=1)
        with torch.no_grad():
            gap = torch.special.ndtri(top[:, 0]) - torch.special.ndtri(top[:, 1])
            counted = (classes[:, 0] == labels) & gap.isfinite() & (gap <= self.macer_gamma)
        # Uncounted samples go through Phi^-1 at 0.75 / 0.25: finite values and gradients, so
        # the zero weight below cannot meet an infinite derivative (0 * inf = NaN).
        p_a = torch.where(counted, top[:, 0], 0.75)
        p_b = torch.where(counted, top[:, 1], 0.25)
        hinge = self.macer_gamma - (torch.special.ndtri(p_a) - torch.special.ndtri(p_b))
        return self.sigma / 2 * (hinge * counted).sum() / len(labels)
