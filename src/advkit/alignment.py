"""GradAlign's gradient alignment: cos(grad_x l(x), grad_x l(x + eta)), eta uniform in the eps-ball.

Andriushchenko & Flammarion, "Understanding and Improving Fast Adversarial Training", NeurIPS 2020
(arXiv:2007.02617). A model that is locally linear around x has aligned input gradients (cosine 1);
catastrophic overfitting of single-step training shows as the cosine falling. One cosine serves
the GradAlign regularizer (:mod:`advkit.methods.gradalign`), the per-epoch metric
``--track-grad-align`` and the ``grad_alignment`` analysis.

The cosine of a zero gradient is undefined. The regularizer leaves such samples out of its mean
(the authors' training code); a measurement counts them as aligned, cosine 1 (the authors'
``avg_cos_np``, which replaces the NaN of 0/0 by 1), and says how many there were: a sample whose
loss is flat around x (saturated softmax) is trivially "linear". eta is drawn uniformly in the
L-inf or L2 ball and x + eta clipped to [0, 1] (:meth:`ThreatModel.random_init`), as in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from advkit.attacks._mode import attack_mode
from advkit.attacks.gradients import require_input_gradient
from advkit.attacks.losses import cross_entropy
from advkit.noise import Noise
from advkit.threat import get_threat


def input_gradient(
    model: nn.Module, inputs: Tensor, delta: Tensor, labels: Tensor, create_graph: bool = False
) -> Tensor:
    """Gradient of the summed CE with respect to the input at ``inputs + delta`` (N, C, H, W).

    Summed, not averaged: each sample's gradient does not shrink with the batch size (and does not
    underflow on large batches). ``create_graph`` keeps it differentiable (double backprop)."""
    delta = delta.detach().requires_grad_(True)
    loss = cross_entropy(model(inputs + delta), labels).sum()
    return require_input_gradient(
        loss, delta, purpose="GradAlign's gradient alignment", create_graph=create_graph
    )


def gradient_cosines(grad_a: Tensor, grad_b: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample cosine of two gradient batches (N, ...), in float32, and where it is defined
    (both gradients nonzero): ``(cos, valid)``, cos 0 where undefined. Differentiable, with a
    finite double backward (norms clamped, not offset, so defined cosines are exact)."""
    a, b = grad_a.flatten(1).float(), grad_b.flatten(1).float()
    sq_a, sq_b = a.square().sum(1), b.square().sum(1)
    valid = (sq_a > 0) & (sq_b > 0)
    tiny = torch.finfo(a.dtype).tiny
    cos = (a * b).sum(1) * sq_a.clamp_min(tiny).rsqrt() * sq_b.clamp_min(tiny).rsqrt()
    return cos, valid


@dataclass
class Alignment:
    """Per-sample GradAlign cosines (N,), zero gradients counted as 1, and where a gradient was
    zero (N,) bool."""

    cos: Tensor
    zero: Tensor


def measure_alignment(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    eps: float,
    norm: str,
    noise: Noise,
    batch_size: int = 256,
) -> Alignment:
    """GradAlign's cosine at each of ``inputs`` (N, C, H, W) in [0, 1], the model in eval mode
    (its mode restored), eta drawn from ``noise`` (keyed noise: the same eta for a sample however
    the points are batched). Parameter ``.grad`` is never touched."""
    threat = get_threat(norm)
    eta = threat.random_init(inputs, eps, noise)
    cosines, zeros = [], []
    with attack_mode(model, train=False):
        for start in range(0, len(inputs), batch_size):
            part = slice(start, start + batch_size)
            x, y = inputs[part], labels[part]
            grad_x = input_gradient(model, x, torch.zeros_like(x), y)
            grad_eta = input_gradient(model, x, eta[part], y)
            cos, valid = gradient_cosines(grad_x, grad_eta)
            cosines.append(torch.where(valid, cos, torch.ones_like(cos)))
            zeros.append(~valid)
    if not cosines:
        empty = torch.zeros(0, device=inputs.device)
        return Alignment(empty, empty.bool())
    return Alignment(torch.cat(cosines), torch.cat(zeros))
