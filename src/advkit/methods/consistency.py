"""Consistency regularization for randomized smoothing (Jeong & Shin, "Consistency Regularization
for Certified Robustness of Smoothed Classifiers", NeurIPS 2020, arXiv:2006.04062).

Each batch: ``num_noise`` (m, default 2) noisy copies of every image, noise N(0, sigma^2 I), in
one forward; the loss is the cross-entropy averaged over the m copies, plus
``consistency_lambda`` times the mean over copies of KL(p_mean || p_i), p_i the softmax of copy
i and p_mean their average (gradients flow through p_mean too, as in the paper's code), plus
``consistency_eta`` times the entropy of p_mean; every term a batch mean, one weight update.
Defaults are the paper's code's: lambda 10, eta 0.5, m 2 (its MNIST runs use lambda 20, its
CIFAR-10 runs 10 or 20 by sigma). No attack (the paper's SmoothAdv + consistency variant is not
here). ``sigma`` in [0, 1] pixel units, the noisy images unclipped unless ``noise_clip``.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from advkit.methods.base import METHODS, StepContext, StepOutput
from advkit.methods.smoothing import SmoothingMethod, repeat_labels


@METHODS.register(
    "consistency",
    description="Gaussian noise with consistency regularization over --num-noise copies, for "
    "randomized smoothing (Jeong & Shin 2020)",
)
class ConsistencyTraining(SmoothingMethod):
    """Cross-entropy + lambda * KL(mean || each) + eta * entropy(mean) over m noisy copies."""

    name = "consistency"
    min_num_noise = 2

    def __init__(
        self,
        *,
        num_noise: int = 2,
        consistency_lambda: float = 10.0,
        consistency_eta: float = 0.5,
        **base: Any,
    ) -> None:
        super().__init__(num_noise=num_noise, **base)
        for name, value in (("consistency_lambda", consistency_lambda),
                            ("consistency_eta", consistency_eta)):  # fmt: skip
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        self.consistency_lambda = consistency_lambda
        self.consistency_eta = consistency_eta

    @classmethod
    def config_kwargs(cls, config: Any) -> dict[str, Any]:
        return super().config_kwargs(config) | {
            "consistency_lambda": config.consistency_lambda,
            "consistency_eta": config.consistency_eta,
        }

    def step(self, inputs: Tensor, labels: Tensor, ctx: StepContext) -> StepOutput:
        noisy = self.noisy(inputs, self.draw_noise(inputs, ctx))
        logits = ctx.model(noisy)
        cross_entropy = self.criterion(logits, repeat_labels(labels, self.num_noise))
        kl, entropy = consistency_terms(logits, self.num_noise)
        loss = cross_entropy + self.consistency_lambda * kl + self.consistency_eta * entropy
        ctx.optimize(loss)
        metrics = {"consistency_kl": kl.detach(), "consistency_entropy": entropy.detach()}
        return StepOutput(loss=loss.detach(), logits=self.smoothed(logits), metrics=metrics)


def consistency_terms(logits: Tensor, num_noise: int) -> tuple[Tensor, Tensor]:
    """Batch means of (1/m) sum_i KL(p_mean || p_i) and of the entropy of p_mean, from the
    (N * m, C) logits of the sample-major noisy copies; float32."""
    log_probs = F.log_softmax(logits.float(), dim=1).unflatten(0, (-1, num_noise))
    log_mean = torch.logsumexp(log_probs, dim=1, keepdim=True) - math.log(num_noise)
    mean = log_mean.exp()
    kl = (mean * (log_mean - log_probs)).sum(dim=2).mean()
    entropy = -(mean * log_mean).sum(dim=2).mean()
    return kl, entropy
