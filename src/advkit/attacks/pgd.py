"""FGSM and PGD for L-inf and L2 threat models.

Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015 (arXiv:1412.6572);
Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018
(arXiv:1706.06083). Inputs are in [0, 1], ``eps`` and ``step_size`` in pixel units.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advkit.attacks._mode import attack_mode
from advkit.attacks.losses import LOSSES, LossFn
from advkit.threat import ThreatModel, get_threat


def pgd_delta(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    delta: Tensor,
    *,
    threat: ThreatModel,
    eps: float,
    steps: int,
    step_size: float,
    loss_fn: LossFn,
    targeted: bool = False,
) -> Tensor:
    """The bare PGD loop from a given start ``delta``: returns the final perturbation.

    The hot loop of PGD adversarial training: one forward and one input-gradient backward per step,
    parameter ``.grad`` never touched, nothing synchronized with the host. The caller sets the
    model's mode.
    """
    sign = -1.0 if targeted else 1.0
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = loss_fn(model(inputs + delta), labels).sum()
        (grad,) = torch.autograd.grad(sign * loss, delta)
        with torch.no_grad():
            delta = threat.project(threat.ascent(delta, grad, step_size), inputs, eps)
    return delta.detach()


def pgd(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    step_size: float | None = None,
    random_start: bool = True,
    restarts: int = 1,
    loss: str = "ce",
    targeted: bool = False,
    train_mode: bool = False,
) -> Tensor:
    """Projected gradient ascent on ``loss`` within the ``norm`` ball of radius ``eps``.

    Args:
        model: returns logits for inputs in [0, 1].
        inputs: (N, C, H, W) in [0, 1]. labels: (N,) true labels, or target labels if targeted.
        eps: radius in pixel units (e.g. 8/255). step_size: defaults to 2.5 * eps / steps.
        restarts: extra random starts attack only the samples not yet fooled; for each sample the
            first successful perturbation is kept, else the last run's.
        loss: a name in ``advkit.attacks.losses.LOSSES`` ("ce", "cw", "dlr").
        targeted: minimize the loss towards ``labels`` instead of maximizing it.
        train_mode: run the model in train mode (BatchNorm batch statistics) during the attack.

    Returns:
        adversarial inputs, same shape as ``inputs``, within the budget and in [0, 1].
    """
    _check_budget(eps, steps, restarts)
    threat = get_threat(norm)
    loss_fn = LOSSES.get(loss)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    inputs = inputs.detach()
    adv_inputs = inputs.clone()
    remaining = torch.arange(len(inputs), device=inputs.device)
    with attack_mode(model, train=train_mode):
        for _ in range(restarts):
            x, y = inputs[remaining], labels[remaining]
            start = threat.random_init(x, eps) if random_start else torch.zeros_like(x)
            delta = pgd_delta(
                model, x, y, start, threat=threat, eps=eps, steps=steps,
                step_size=step_size, loss_fn=loss_fn, targeted=targeted,
            )  # fmt: skip
            adv_inputs[remaining] = x + delta
            if restarts == 1:
                break
            with torch.no_grad():
                predictions = model(x + delta).argmax(dim=1)
            fooled = predictions == y if targeted else predictions != y
            remaining = remaining[~fooled]
            if len(remaining) == 0:
                break
    return adv_inputs


def fgsm(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    eps: float,
    norm: str = "linf",
    step_size: float | None = None,
    random_start: bool = False,
    loss: str = "ce",
    targeted: bool = False,
    train_mode: bool = False,
) -> Tensor:
    """Fast gradient (sign) method: one ascent step, optionally from a random start.

    With ``random_start`` this is the FGSM-RS of Wong et al., "Fast is better than free", ICLR 2020
    (arXiv:2001.03994), whose default step is 1.25 * eps; without it the step is eps.
    """
    if step_size is None:
        step_size = 1.25 * eps if random_start else eps
    return pgd(
        model, inputs, labels, eps=eps, norm=norm, steps=1, step_size=step_size,
        random_start=random_start, loss=loss, targeted=targeted, train_mode=train_mode,
    )  # fmt: skip


def _check_budget(eps: float, steps: int, restarts: int) -> None:
    if eps < 0:
        raise ValueError(f"eps must be >= 0 (pixel units, e.g. 8/255), got {eps}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
