"""The empirical column beside the certificate: an L2 attack on the soft smoothed classifier.

SmoothAdv's attack (Salman et al., "Provably Robust Deep Learning via Adversarially Trained
Smoothed Classifiers", NeurIPS 2019, arXiv:1906.04584): with m noise draws fixed for the whole
attack, T steps of L2 PGD maximize -log of the mean over the m noisy copies of the softmax
probability of the true class, projected onto the L2 ball of radius r around the input and onto
[0, 1] (the attacked input is an image; the noise on top of it is not clipped). The attacked
input is then classified by PREDICT. A certificate at radius r that holds cannot be beaten by
any attack within r, so the certified accuracy at r can only exceed this empirical robust
accuracy by sampling error; more is a bug, and the report flags it.

The attack is the one SmoothAdv training uses (``advkit.attacks.smoothing``), with more draws
and steps by default.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from torch import Tensor, nn

from advkit.attacks.smoothing import smoothed_pgd
from advkit.certification.smoothing import ABSTAIN, ATTACK, Smooth
from advkit.certification.statistics import clopper_pearson_interval
from advkit.noise import Noise, sample_noise

DEFAULT_M = 8
DEFAULT_STEPS = 20


def attack_smoothed(
    model: nn.Module,
    inputs: Tensor,
    labels: Tensor,
    radius: float,
    *,
    sigma: float,
    m: int = DEFAULT_M,
    steps: int = DEFAULT_STEPS,
    noise: Noise,
) -> Tensor:
    """Adversarial inputs (N, C, H, W) in [0, 1] within L2 ``radius`` (pixel units) of
    ``inputs`` against the soft smoothed classifier of ``model`` at noise ``sigma``: SmoothAdv's
    attack (:func:`advkit.attacks.smoothing.smoothed_pgd`) with ``m`` draws from ``noise`` held
    fixed and ``steps`` steps of 2 * radius / steps."""
    if radius <= 0:
        return inputs.clone()
    return smoothed_pgd(
        model, inputs, labels, eps=radius, sigma=sigma, num_noise=m, steps=steps, noise=noise
    )


@dataclass(frozen=True)
class EmpiricalPoint:
    """Empirical robust accuracy of the smoothed classifier at one radius, on ``n`` samples,
    with its exact interval, beside the certified accuracy on the same samples."""

    radius: float
    robust: int
    certified: int
    n: int
    interval: tuple[float, float]
    certified_interval: tuple[float, float]
    #: attacked inputs on which PREDICT abstained: undecided, so no evidence against a
    #: certificate (the flag counts them as not broken; the accuracy, as Cohen et al., as wrong)
    abstained: int = 0
    unbroken_interval: tuple[float, float] = (0.0, 1.0)

    @property
    def suspicious(self) -> bool:
        """The certified accuracy above the fraction the attack did not break (right or
        abstaining) beyond sampling error: a bug."""
        return self.certified_interval[0] > self.unbroken_interval[1]

    def to_dict(self) -> dict[str, object]:
        return {
            "radius": self.radius, "empirical_accuracy": self.robust / self.n,
            "empirical_interval": list(self.interval),
            "certified_accuracy_same_samples": self.certified / self.n,
            "certified_interval_same_samples": list(self.certified_interval),
            "abstained": self.abstained, "n": self.n,
            "certified_above_empirical": self.suspicious,
        }  # fmt: skip


def empirical_column(
    smooth: Smooth,
    inputs: Tensor,
    labels: Tensor,
    sample_ids: np.ndarray,
    certified_radii: np.ndarray,
    certified_correct: np.ndarray,
    radii: list[float],
    *,
    n: int,
    alpha: float,
    batch_size: int,
    confidence: float,
    m: int = DEFAULT_M,
    steps: int = DEFAULT_STEPS,
) -> list[EmpiricalPoint]:
    """Attack ``inputs`` at each radius, classify the attacked inputs with PREDICT (n draws),
    and set the fraction still right beside the fraction certified at that radius."""
    points = []
    for r in radii:
        noise = sample_noise(smooth.seed, round(r * 1e6), sample_ids, ATTACK)
        attacked = attack_smoothed(smooth.model, inputs, labels, r, sigma=smooth.sigma, m=m,
                                   steps=steps, noise=noise)  # fmt: skip
        predicted = smooth.predict(attacked, n, alpha, batch_size=batch_size,
                                   sample_ids=list(sample_ids))  # fmt: skip
        robust = int((predicted == labels.cpu()).sum())
        abstained = int((predicted == ABSTAIN).sum())
        certified = int((certified_correct & (certified_radii >= r)).sum())
        count = len(labels)
        points.append(EmpiricalPoint(
            r, robust, certified, count, clopper_pearson_interval(robust, count, confidence),
            clopper_pearson_interval(certified, count, confidence), abstained,
            clopper_pearson_interval(robust + abstained, count, confidence),
        ))  # fmt: skip
    return points
