"""Helpers for the attack tests: linear models whose optimal attacks are known in closed form."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass
class LinearProblem:
    """``logits = weight @ flatten(x) + bias`` on inputs in [0.3, 0.7], labels = predictions."""

    model: nn.Module
    inputs: Tensor
    labels: Tensor
    weight: Tensor
    bias: Tensor

    def logits(self, inputs: Tensor) -> Tensor:
        return inputs.flatten(1) @ self.weight.T + self.bias

    def optimal_eps(self, norm: str) -> Tensor:
        """Per sample, the smallest ``norm`` perturbation that changes the prediction (no box).

        Misclassified means z_t >= z_y for some t, a union of half-spaces, so the distance is the
        smallest over t of margin_t / ||w_y - w_t||_q, q the dual norm (1 for L-inf, 2 for L2).
        """
        margins = self.logits(self.inputs).gather(1, self.labels[:, None]) - self.logits(
            self.inputs
        )
        differences = self.weight[self.labels][:, None, :] - self.weight[None, :, :]
        dual = differences.abs().sum(-1) if norm == "linf" else differences.norm(dim=-1)
        distances = margins / dual.clamp_min(1e-12)
        distances[torch.arange(len(self.labels)), self.labels] = math.inf
        return distances.min(dim=1).values

    def margin_gain(self, adv_inputs: Tensor, target: Tensor) -> Tensor:
        """Increase of z_target - z_y from the clean inputs to ``adv_inputs``, per sample."""

        def margin(x: Tensor) -> Tensor:
            logits = self.logits(x)
            return logits.gather(1, target[:, None]).squeeze(1) - logits.gather(
                1, self.labels[:, None]
            ).squeeze(1)

        return margin(adv_inputs) - margin(self.inputs)

    def best_gain(self, eps: float, norm: str, target: Tensor) -> Tensor:
        """The largest possible increase of z_target - z_y within the ball (box not binding)."""
        differences = self.weight[target] - self.weight[self.labels]
        dual = differences.abs().sum(1) if norm == "linf" else differences.norm(dim=1)
        return eps * dual

    def fooled(self, adv_inputs: Tensor) -> Tensor:
        return self.logits(adv_inputs).argmax(dim=1) != self.labels


def linear_problem(
    *,
    num_classes: int = 4,
    real_classes: int = 2,
    n: int = 64,
    shape: tuple[int, ...] = (1, 8, 8),
    seed: int = 0,
) -> LinearProblem:
    """A linear classifier on flattened inputs with ``real_classes`` competing classes; the others
    are dummies (zero weight, bias -100) that never win but let the DLR losses (>= 3 or 4 classes)
    apply. With two real classes it is a binary classifier with closed-form optimal attacks."""
    generator = torch.Generator().manual_seed(seed)
    features = math.prod(shape)
    weight = torch.zeros(num_classes, features)
    weight[:real_classes] = torch.randn(real_classes, features, generator=generator)
    bias = torch.zeros(num_classes)
    bias[real_classes:] = -100.0
    linear = nn.Linear(features, num_classes)
    with torch.no_grad():
        linear.weight.copy_(weight)
        linear.bias.copy_(bias)
    model = nn.Sequential(nn.Flatten(), linear)
    inputs = 0.3 + 0.4 * torch.rand(n, *shape, generator=generator)
    labels = (inputs.flatten(1) @ weight.T + bias).argmax(dim=1)
    return LinearProblem(model, inputs, labels, weight, bias)


def other_real_class(problem: LinearProblem) -> Tensor:
    """For a two-real-class problem: the class each sample is not."""
    return 1 - problem.labels


def small_net(features: int = 48, num_classes: int = 5, seed: int = 0) -> nn.Module:
    """A small nonlinear classifier on (N, 3, 4, 4) inputs."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(features, 16), nn.ReLU(), nn.Linear(16, num_classes)
    )


class Quantize(nn.Module):
    """x -> round(4 x) / 4: a step function whose gradient is zero almost everywhere."""

    def forward(self, x: Tensor) -> Tensor:
        return torch.round(x * 4) / 4
