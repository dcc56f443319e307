"""Auto-PGD (APGD) and its targeted variant APGD-T.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (arXiv:2003.01690). Inputs are in [0, 1] with shape
(N, C, H, W); ``eps`` is in pixel units (a float or a per-sample (N,) tensor).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial

import torch
from torch import Tensor, nn

from advkit.attacks._entry import public_attack
from advkit.attacks._mode import attack_mode
from advkit.attacks.gradients import input_gradient
from advkit.attacks.losses import LOSSES, LossFn, cw_margin, targeted_dlr
from advkit.threat import ThreatModel, get_threat

#: Objective of one run: ``(logits, labels) -> (N,)`` loss to maximize.
RunLoss = Callable[[Tensor, Tensor], Tensor]

_MOMENTUM = 0.75


@public_attack("apgd")
def apgd(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    eps: float | Tensor,
    norm: str = "linf",
    steps: int = 100,
    loss: str = "ce",
    restarts: int = 1,
    rho: float = 0.75,
    seed: int | None = None,
    targeted: bool = False,
    train_mode: bool = False,
) -> Tensor:
    """Auto-PGD: PGD with momentum and a step size halved at checkpoints when progress stalls.

    Croce & Hein, ICML 2020 (arXiv:2003.01690). Norm: "linf" or "l2".

    Args:
        model: returns logits for inputs in [0, 1].
        inputs: (N, C, H, W) in [0, 1]. labels: (N,) true labels, or target labels if targeted.
        eps: radius in pixel units (e.g. 8/255), a float or a per-sample (N,) tensor.
        steps: iterations (each one forward and one input-gradient backward, plus one initial).
        loss: "ce", "dlr" (needs >= 3 classes) or "cw", maximized (minimized if targeted).
        restarts: extra random starts attack only the samples not fooled so far.
        rho: a step-size halving is triggered when fewer than this fraction of the steps since the
            last checkpoint increased the loss.
        seed: seeds the random starts (the global RNG is left untouched); None uses the global RNG.
        targeted: move towards the class ``labels`` (losses "ce" and "cw" only).
        train_mode: run the model in train mode (BatchNorm batch statistics) during the attack.

    Returns:
        adversarial inputs, same shape as ``inputs``, within the budget and in [0, 1]: for each
        sample a misclassified (or, if targeted, target-classified) iterate whenever one was met,
        else the iterate with the highest loss over all runs.
    """
    _check_args(steps, restarts, rho)
    threat = get_threat(norm)
    loss_fn = LOSSES.get(loss)
    if targeted and loss == "dlr":
        raise ValueError("targeted apgd supports loss='ce' or 'cw'; for DLR use apgd_targeted")
    sign = -1.0 if targeted else 1.0
    inputs, eps_all = inputs.detach(), _per_sample_eps(eps, inputs)
    adv_inputs = inputs.clone()
    best_loss = torch.full((len(inputs),), -math.inf, device=inputs.device)
    remaining = torch.arange(len(inputs), device=inputs.device)
    with attack_mode(model, train=train_mode), _seeded(seed, inputs.device):
        for _ in range(restarts):
            x, y = inputs[remaining], labels[remaining]
            delta, fooled, run_loss, _ = apgd_run(
                model, x, y, eps_all[remaining], threat=threat, steps=steps,
                loss_fn=partial(_signed_loss, loss_fn, sign, loss), success_labels=y,
                targeted=targeted, rho=rho,
            )  # fmt: skip
            remaining = _merge_run(adv_inputs, best_loss, remaining, x + delta, fooled, run_loss)
            if len(remaining) == 0:
                break
    return adv_inputs.clamp_(0.0, 1.0)


@public_attack("apgd-t")
def apgd_targeted(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    eps: float | Tensor,
    norm: str = "linf",
    steps: int = 100,
    num_target_classes: int = 9,
    rho: float = 0.75,
    seed: int | None = None,
    train_mode: bool = False,
) -> Tensor:
    """APGD-T: APGD on the targeted DLR loss, one run per target among the top clean classes.

    Croce & Hein, ICML 2020 (arXiv:2003.01690). Norm: "linf" or "l2". The targets are the
    ``num_target_classes`` highest clean logits other than the true class (at most classes - 1);
    each run attacks only the samples still correctly classified. With fewer than 4 classes the
    targeted DLR is undefined and the targeted margin ``z_t - z_y`` is used instead.

    Args:
        model: returns logits for inputs in [0, 1].
        inputs: (N, C, H, W) in [0, 1]. labels: (N,) true labels.
        eps: radius in pixel units, a float or a per-sample (N,) tensor.
        steps: APGD iterations per target class.
        seed: seeds the random starts (the global RNG is left untouched); None uses the global RNG.
        train_mode: run the model in train mode (BatchNorm batch statistics) during the attack.

    Returns:
        adversarial inputs (N, C, H, W) within the budget and in [0, 1]: a misclassified iterate
        for every sample where one was met, else, over the target runs' best-loss iterates, the
        one closest to misclassification (highest margin max_{j != y} z_j - z_y).
    """
    _check_args(steps, 1, rho)
    if num_target_classes < 1:
        raise ValueError(f"num_target_classes must be >= 1, got {num_target_classes}")
    threat = get_threat(norm)
    inputs, eps_all = inputs.detach(), _per_sample_eps(eps, inputs)
    adv_inputs = inputs.clone()
    best_margin = torch.full((len(inputs),), -math.inf, device=inputs.device)
    remaining = torch.arange(len(inputs), device=inputs.device)
    with attack_mode(model, train=train_mode), _seeded(seed, inputs.device):
        with torch.no_grad():
            clean_logits = model(inputs).float()
        num_classes = clean_logits.shape[1]
        if num_classes < 2:
            raise ValueError(f"apgd_targeted needs a model with >= 2 classes, got {num_classes}")
        others = clean_logits.scatter(1, labels[:, None], -math.inf)
        targets = others.topk(min(num_target_classes, num_classes - 1), dim=1).indices
        for rank in range(targets.shape[1]):
            x, y, target = inputs[remaining], labels[remaining], targets[remaining, rank]
            objective = targeted_dlr if num_classes >= 4 else _targeted_margin
            run_loss = partial(objective, target_labels=target)
            delta, fooled, _, margin = apgd_run(
                model, x, y, eps_all[remaining], threat=threat, steps=steps,
                loss_fn=run_loss, success_labels=y, targeted=False, rho=rho,
            )  # fmt: skip
            remaining = _merge_run(adv_inputs, best_margin, remaining, x + delta, fooled, margin)
            if len(remaining) == 0:
                break
    return adv_inputs.clamp_(0.0, 1.0)


def _merge_run(
    adv_inputs: Tensor,
    best_score: Tensor,
    remaining: Tensor,
    run_adv: Tensor,
    fooled: Tensor,
    score: Tensor,
) -> Tensor:
    """Fold one run on the ``remaining`` samples into the result, in place: a sample takes the
    run's point if it fooled the model or scored higher than its best so far. Returns the indices
    still not fooled (the ones a further run attacks)."""
    keep = fooled | (score > best_score[remaining])
    adv_inputs[remaining[keep]] = run_adv[keep]
    best_score[remaining] = torch.maximum(best_score[remaining], score)
    return remaining[~fooled]


def apgd_run(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    eps: Tensor,
    *,
    threat: ThreatModel,
    steps: int,
    loss_fn: RunLoss,
    success_labels: Tensor,
    targeted: bool = False,
    rho: float = 0.75,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One APGD run from a random start; the caller sets the model's mode and the RNG.

    Args:
        inputs: (N, C, H, W) in [0, 1]; labels: (N,) passed to ``loss_fn``; eps: (N,) radii.
        loss_fn: per-sample objective to maximize, ``(logits, labels) -> (N,)``.
        success_labels: a sample counts as fooled when its prediction differs from these (or,
            if ``targeted``, equals them).

    Returns:
        ``(delta, fooled, best_loss, best_margin)``: per sample the perturbation of a fooling
        iterate if one was met (else of the best-loss iterate), whether one was met, the best loss,
        and the untargeted CW margin (max_{j != y} z_j - z_y, y = ``success_labels``) of the
        best-loss iterate.
    """
    n = len(inputs)

    def evaluate(delta: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        delta.requires_grad_(True)
        logits = model(inputs + delta).float()
        loss = loss_fn(logits, labels)
        grad = input_gradient(loss.sum(), delta)
        delta.requires_grad_(False)
        logits = logits.detach()
        predictions = logits.argmax(dim=1)
        success = predictions == success_labels if targeted else predictions != success_labels
        return loss.detach(), grad, success, cw_margin(logits, success_labels)

    delta = threat.random_init(inputs, eps)
    loss, grad, fooled, margin = evaluate(delta)
    adv_delta = delta.clone()
    best_delta, best_grad, best_loss = delta.clone(), grad.clone(), loss.clone()
    best_margin = margin
    previous_delta, previous_loss = delta, loss
    step_size = 2.0 * eps
    increases = torch.zeros(n, device=inputs.device)
    best_loss_at_check = best_loss.clone()
    reduced_at_check = torch.ones(n, dtype=torch.bool, device=inputs.device)
    checkpoints = set(_checkpoints(steps))
    last_check = 0
    for i in range(steps):
        with torch.no_grad():
            momentum = 1.0 if i == 0 else _MOMENTUM
            z = threat.project(threat.ascent(delta, grad, step_size), inputs, eps)
            candidate = delta + momentum * (z - delta) + (1.0 - momentum) * (delta - previous_delta)
            previous_delta, delta = delta, threat.project(candidate, inputs, eps)
        loss, grad, success, margin = evaluate(delta)
        with torch.no_grad():
            adv_delta = torch.where(_rows(success, delta), delta, adv_delta)
            fooled |= success
            increases += loss > previous_loss
            previous_loss = loss
            improved = loss > best_loss
            best_delta = torch.where(_rows(improved, delta), delta, best_delta)
            best_grad = torch.where(_rows(improved, grad), grad, best_grad)
            best_loss = torch.where(improved, loss, best_loss)
            best_margin = torch.where(improved, margin, best_margin)
            if i + 1 in checkpoints:
                oscillating = increases < rho * (i + 1 - last_check)
                stalled = ~reduced_at_check & (best_loss <= best_loss_at_check)
                reduce = oscillating | stalled
                step_size = torch.where(reduce, step_size / 2, step_size)
                back = _rows(reduce, delta)
                delta = torch.where(back, best_delta, delta)
                grad = torch.where(back, best_grad, grad)
                previous_delta = torch.where(back, best_delta, previous_delta)
                previous_loss = torch.where(reduce, best_loss, previous_loss)
                reduced_at_check, best_loss_at_check = reduce, best_loss.clone()
                increases.zero_()
                last_check = i + 1
    delta = torch.where(_rows(fooled, delta), adv_delta, best_delta)
    return delta, fooled, best_loss, best_margin


def _checkpoints(steps: int) -> list[int]:
    """Iterations w_j = ceil(p_j * steps) with p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    fractions = [0.0, 0.22]
    while fractions[-1] < 1.0:
        fractions.append(fractions[-1] + max(fractions[-1] - fractions[-2] - 0.03, 0.06))
    points = {math.ceil(round(p * steps, 6)) for p in fractions[1:]}
    return sorted(w for w in points if 0 < w <= steps)


def _targeted_margin(logits: Tensor, labels: Tensor, target_labels: Tensor) -> Tensor:
    logits = logits.float()
    return logits.gather(1, target_labels[:, None]).squeeze(1) - logits.gather(
        1, labels[:, None]
    ).squeeze(1)


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    return mask.view(-1, *([1] * (like.dim() - 1)))


def _per_sample_eps(eps: float | Tensor, inputs: Tensor) -> Tensor:
    """``eps`` as a (N,) tensor on the inputs' device and dtype, checked to be >= 0."""
    values = torch.as_tensor(eps, dtype=inputs.dtype, device=inputs.device)
    if values.dim() > 1 or (values.dim() == 1 and len(values) != len(inputs)):
        raise ValueError(
            f"eps must be a float or a per-sample tensor of shape ({len(inputs)},), got shape "
            f"{tuple(values.shape)}"
        )
    if bool((values < 0).any()) or not bool(torch.isfinite(values).all()):
        raise ValueError(f"eps must be finite and >= 0 (pixel units, e.g. 8/255), got {eps}")
    return values.expand(len(inputs)).clone()


def _check_args(steps: int, restarts: int, rho: float) -> None:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if not 0.0 <= rho <= 1.0:
        raise ValueError(f"rho must be in [0, 1], got {rho}")


def _signed_loss(loss_fn: LossFn, sign: float, name: str, logits: Tensor, labels: Tensor) -> Tensor:
    if name == "dlr" and logits.shape[1] < 3:
        raise ValueError(
            f"loss='dlr' needs a model with >= 3 classes, got {logits.shape[1]}; use loss='ce' or "
            f"loss='cw'"
        )
    return sign * loss_fn(logits, labels)


@contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch's RNG for the block and restore the caller's RNG state after (None: no-op)."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield
