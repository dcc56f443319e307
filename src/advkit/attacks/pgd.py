"""FGSM and PGD for L-inf and L2 threat models.

Goodfellow et al., "Explaining and Harnessing Adversarial Examples", ICLR 2015 (arXiv:1412.6572);
Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018
(arXiv:1706.06083). Inputs are in [0, 1], ``eps`` and ``step_size`` in pixel units.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from advkit.attacks._entry import public_attack
from advkit.attacks._mode import attack_mode
from advkit.attacks.gradients import input_gradient
from advkit.attacks.losses import LOSSES, LossFn
from advkit.threat import LinfThreat, ThreatModel, _as_batch, get_threat


def pgd_delta(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    delta: Tensor,
    *,
    threat: ThreatModel,
    eps: Tensor | float,
    steps: int,
    step_size: Tensor | float,
    loss_fn: LossFn,
    targeted: bool = False,
) -> Tensor:
    """The bare PGD loop from a given start ``delta``: returns the final perturbation.

    The first gradient is taken at ``inputs + delta`` as given, so a start outside the [0, 1] box
    is allowed (fast training's "ball" init); every step is projected to the ball and the box.

    The hot loop of PGD adversarial training: one forward and one input-gradient backward per step,
    parameter ``.grad`` never touched, nothing synchronized with the host. The caller sets the
    model's mode and is trusted with its arguments (no checks here: use :func:`pgd` for those).
    ``eps`` and ``step_size`` may be floats or per-sample (N,) tensors.
    """
    if isinstance(threat, LinfThreat):
        return _pgd_linf(
            model, inputs, labels, delta, eps=eps, steps=steps, step_size=step_size,
            loss_fn=loss_fn, targeted=targeted,
        )  # fmt: skip
    sign = -1.0 if targeted else 1.0
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = loss_fn(model(inputs + delta), labels).sum()
        grad = input_gradient(sign * loss, delta)
        with torch.no_grad():
            delta = threat.project(threat.ascent(delta, grad, step_size), inputs, eps)
    return delta.detach()


def _pgd_linf(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    delta: Tensor,
    *,
    eps: Tensor | float,
    steps: int,
    step_size: Tensor | float,
    loss_fn: LossFn,
    targeted: bool,
) -> Tensor:
    """L-inf PGD on the adversarial point itself, updated in place: the ball and the box are one
    box [max(x - eps, 0), min(x + eps, 1)], so a step is a sign, a fused add and one clamp (the same
    iterates as ``project(ascent(...))``, without their temporaries)."""
    inputs = inputs.detach()
    radius = _as_batch(eps, inputs)
    lower = (inputs - radius).clamp_(min=0.0)
    upper = (inputs + radius).clamp_(max=1.0)
    step = _as_batch(step_size, inputs)
    if targeted:
        step = -step
    adv = inputs + delta.detach()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = loss_fn(model(adv), labels).sum()
        grad = input_gradient(loss, adv)
        adv.requires_grad_(False)
        with torch.no_grad():
            # The gradient is ours to overwrite unless autograd handed back a broadcast view.
            direction = grad.sign_() if grad.is_contiguous() else grad.sign()
            if isinstance(step, Tensor):
                adv.addcmul_(direction, step)
            else:
                adv.add_(direction, alpha=step)
            adv.clamp_(lower, upper)
    return adv.sub_(inputs)


@public_attack("pgd")
def pgd(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    eps: float | Tensor,
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
        eps: radius in pixel units (e.g. 8/255), a float or a per-sample (N,) tensor.
        step_size: defaults to 2.5 * eps / steps.
        restarts: extra random starts attack only the samples not yet fooled; for each sample the
            first successful perturbation is kept, else the last run's.
        loss: a name in ``advkit.attacks.losses.LOSSES`` ("ce", "cw", "dlr").
        targeted: minimize the loss towards ``labels`` instead of maximizing it.
        train_mode: run the model in train mode (BatchNorm batch statistics) during the attack.

    Returns:
        adversarial inputs, same shape as ``inputs``, within the budget and in [0, 1].
    """
    _check_counts(steps, restarts)
    threat = get_threat(norm)
    loss_fn = LOSSES.get(loss)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    inputs = inputs.detach()
    x, y, radius, remaining = inputs, labels, eps, None
    with attack_mode(model, train=train_mode):
        for restart in range(restarts):
            start = threat.random_init(x, radius) if random_start else torch.zeros_like(x)
            delta = pgd_delta(
                model, x, y, start, threat=threat, eps=radius, steps=steps,
                step_size=_subset(step_size, remaining), loss_fn=loss_fn, targeted=targeted,
            )  # fmt: skip
            if remaining is None:
                adv_inputs = x + delta
            else:
                adv_inputs.index_copy_(0, remaining, x + delta)
            if restart == restarts - 1:
                break
            with torch.no_grad():
                predictions = model(x + delta).argmax(dim=1)
            fooled = predictions == y if targeted else predictions != y
            left = (~fooled).nonzero().squeeze(1)
            remaining = left if remaining is None else remaining[left]
            if len(remaining) == 0:
                break
            x, y = inputs.index_select(0, remaining), labels.index_select(0, remaining)
            radius = _subset(eps, remaining)
    return adv_inputs.clamp_(0.0, 1.0)


@public_attack("fgsm")
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
    return pgd.__wrapped__(  # type: ignore[attr-defined]  # arguments checked on entry
        model, inputs, labels, eps=eps, norm=norm, steps=1, step_size=step_size,
        random_start=random_start, loss=loss, targeted=targeted, train_mode=train_mode,
    )  # fmt: skip


def _subset(value: Tensor | float, index: Tensor | None) -> Tensor | float:
    """A per-sample (N,) tensor restricted to ``index``; scalars pass through."""
    if index is None or not isinstance(value, Tensor) or value.dim() == 0:
        return value
    return value.index_select(0, index)


def _check_counts(steps: int, restarts: int) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
