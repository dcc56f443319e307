"""Gaussian noise for randomized smoothing, and PGD against the soft smoothed classifier.

Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019, arXiv:1902.02918) classifies x by
g(x) = argmax_c P(f(x + n) = c), n ~ N(0, sigma^2 I). The noise is added to the [0, 1] pixels in
front of the model's normalization layer, so ``sigma`` is in pixel units, like eps; the noisy
image is not clipped to [0, 1] unless ``clip`` (the reference code does not clip).

SmoothAdv's attack (Salman et al., "Provably Robust Deep Learning via Adversarially Trained
Smoothed Classifiers", NeurIPS 2019, arXiv:1906.04584) attacks the soft smoothed classifier
G(x) = E_n[softmax f(x + n)], estimated with ``num_noise`` (m) draws n_1..n_m held fixed for the
whole attack: it maximizes -log(mean_i softmax f(x + delta + n_i))_y with ``steps`` (T) steps of
normalized gradient ascent of ``step_size`` (default 2 * eps / T, the paper's code) from
delta = 0, each step projected to the eps-ball and the [0, 1] box (the image x + delta stays in
[0, 1]; the noise on top of it is not clipped unless ``clip``). A sample whose gradient is zero
does not move (the paper's code takes a random direction there).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advkit.attacks._entry import check_attack_inputs
from advkit.attacks._mode import attack_mode
from advkit.attacks.gradients import input_gradient
from advkit.errors import BudgetError
from advkit.noise import GLOBAL_NOISE, Noise
from advkit.threat import ThreatModel, check_budget, get_threat


def check_sigma(sigma: float, name: str = "sigma") -> None:
    """Refuse a noise level no [0, 1] image means: not a finite number in (0, 1] (a value above 1
    is almost surely in 0..255 units). Raises :class:`advkit.errors.BudgetError` (a ValueError)."""
    if isinstance(sigma, bool) or not isinstance(sigma, int | float):
        raise BudgetError(f"{name} must be a number in pixel units (e.g. 0.25), got {sigma!r}")
    if not (math.isfinite(sigma) and sigma > 0):
        raise BudgetError(
            f"{name} must be a finite number > 0, the noise's standard deviation in [0,1] pixel "
            f"units (e.g. 0.25), got {sigma:g}"
        )
    if sigma > 1:
        raise BudgetError(
            f"{name} {sigma:g} is a noise standard deviation larger than the whole [0,1] pixel "
            f"range; did you mean {sigma:g}/255?"
        )


def gaussian_noise(inputs: Tensor, sigma: float, num_noise: int, noise: Noise) -> Tensor:
    """``num_noise`` draws of N(0, sigma^2 I) per sample, shaped (N, m, *inputs.shape[1:]): one
    draw from ``noise``, so row i is keyed by sample i alone (any worker draws the same)."""
    shape = (len(inputs), num_noise, *inputs.shape[1:])
    return noise.normal(shape, device=inputs.device, dtype=inputs.dtype).mul_(sigma)


def noisy_copies(inputs: Tensor, noise_vectors: Tensor, clip: bool = False) -> Tensor:
    """The (N * m, ...) batch of ``inputs`` plus each of their m ``noise_vectors`` (N, m, ...),
    sample-major (rows i*m .. i*m + m-1 are sample i's copies); clipped to [0, 1] if ``clip``."""
    copies = (inputs.unsqueeze(1) + noise_vectors).flatten(0, 1)
    return copies.clamp(0.0, 1.0) if clip else copies


def smoothed_log_probs(logits: Tensor, num_noise: int) -> Tensor:
    """log of the soft smoothed classifier's probabilities, log(mean_i softmax(logits_i)), (N, C)
    in float32, from the (N * m, C) logits of :func:`noisy_copies`'s sample-major batch."""
    log_probs = F.log_softmax(logits.float(), dim=1).unflatten(0, (-1, num_noise))
    return torch.logsumexp(log_probs, dim=1) - math.log(num_noise)


def smoothed_pgd_delta(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    noise_vectors: Tensor,
    *,
    threat: ThreatModel,
    eps: Tensor | float,
    steps: int,
    step_size: Tensor | float,
    clip: bool = False,
) -> Tensor:
    """SmoothAdv's PGD loop: the perturbation delta (N, ...) of ``inputs`` against the soft
    smoothed classifier with the fixed ``noise_vectors`` (N, m, ...), in pixel units.

    The hot loop of SmoothAdv training: one forward of the N * m copies and one input-gradient
    backward per step, parameter ``.grad`` never touched, nothing synchronized with the host. The
    caller sets the model's mode and is trusted with its arguments (use :func:`smoothed_pgd`)."""
    num_noise = noise_vectors.shape[1]
    delta = torch.zeros_like(inputs)
    for _ in range(steps):
        delta.requires_grad_(True)
        logits = model(noisy_copies(inputs + delta, noise_vectors, clip))
        loss = F.nll_loss(smoothed_log_probs(logits, num_noise), labels, reduction="sum")
        grad = input_gradient(loss, delta)
        with torch.no_grad():
            delta = threat.project(threat.ascent(delta, grad, step_size), inputs, eps)
    return delta.detach()


def smoothed_pgd(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    *,
    eps: float,
    sigma: float,
    num_noise: int = 1,
    steps: int = 10,
    step_size: float | None = None,
    norm: str = "l2",
    clip: bool = False,
    noise: Noise = GLOBAL_NOISE,
    train_mode: bool = False,
) -> Tensor:
    """SmoothAdv's attack on the smoothed classifier of ``model`` (see the module docstring).

    Args:
        model: returns logits for inputs in [0, 1] (its normalization inside).
        inputs: (N, C, H, W) in [0, 1]. labels: (N,) true labels.
        eps: radius in pixel units (the paper's is L2: ``norm`` "l2").
        sigma: the smoothing noise's standard deviation, pixel units.
        num_noise: m, the noise draws per image, fixed during the attack (the paper's defaults:
            m = 1, T = 10 steps). step_size: defaults to 2 * eps / steps.
        noise: the source of the draws (torch's global RNG by default; keyed in training).
        train_mode: run the model in train mode (BatchNorm batch statistics) during the attack.

    Returns:
        adversarial inputs (N, C, H, W) in [0, 1], within ``eps`` of ``inputs``: the images the
        smoothed classifier is then asked about (its own noise drawn afresh).
    """
    check_attack_inputs(inputs, labels)
    check_budget(eps, norm, tuple(inputs.shape[1:]), name="eps")
    check_sigma(sigma)
    if num_noise < 1 or steps < 1:
        raise ValueError(f"num_noise and steps must be >= 1, got {num_noise} and {steps}")
    step_size = 2 * eps / steps if step_size is None else step_size
    check_budget(step_size, norm, tuple(inputs.shape[1:]), name="step_size", allow_zero=False)
    inputs = inputs.detach()
    noise_vectors = gaussian_noise(inputs, sigma, num_noise, noise)
    with attack_mode(model, train=train_mode):
        delta = smoothed_pgd_delta(
            model, inputs, labels, noise_vectors, threat=get_threat(norm), eps=eps,
            steps=steps, step_size=step_size, clip=clip,
        )  # fmt: skip
    return (inputs + delta).clamp_(0.0, 1.0)


__all__ = [
    "check_sigma",
    "gaussian_noise",
    "noisy_copies",
    "smoothed_log_probs",
    "smoothed_pgd",
    "smoothed_pgd_delta",
]
