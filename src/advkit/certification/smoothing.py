"""The smoothed classifier g(x) = argmax_c P(f(x + e) = c), e ~ N(0, sigma^2 I): PREDICT and
CERTIFY of Cohen, Rosenfeld and Kolter (ICML 2019, arXiv:1902.02918).

The noise is added in [0, 1] pixel space in front of the model (whose first layer is its
normalization) and not clipped, as in the paper's reference code. Every draw is keyed
(:func:`advkit.noise.sample_noise`) by the certification's seed, the sample's index in the test
set, the draw's number and its purpose (selection, estimation, prediction), so a sample's counts
depend on nothing else: not on the worker that holds it, the other samples, or where an
interrupted certification resumed. The selection draws (n0) and estimation draws (n) never share
a key. Draws go through the model in chunks of ``batch_size``; the predicted classes are counted
on the model's device and read back once per count (selection, then estimation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from advkit.attacks._mode import attack_mode
from advkit.certification.statistics import (
    binomial_p_value,
    clopper_pearson_lower,
    radius,
)
from advkit.errors import UserError
from advkit.noise import sample_noise

#: The class of an abstention (PREDICT or CERTIFY could not decide).
ABSTAIN = -1

#: Purposes of the keyed draws: each use gets its own, so no two uses share a draw.
SELECTION, ESTIMATION, PREDICTION, ATTACK = 101, 102, 103, 104

DEFAULT_BATCH_SIZE = 1000


class CertifyArgumentError(UserError, ValueError):
    """A certification's parameter a user can fix (sigma, n0, n, alpha)."""


def check_sigma(sigma: float, name: str = "--sigma") -> float:
    """``sigma`` as a float in (0, 1] pixel units, or a one-line error saying what to change."""
    value = float(sigma)
    if not math.isfinite(value) or value <= 0:
        raise CertifyArgumentError(
            f"{name} is the noise's standard deviation in [0,1] pixel units and must be a finite "
            f"number above 0, e.g. 0.25; got {sigma}"
        )
    if value > 1:
        raise CertifyArgumentError(
            f"{name} {value:g} is above 1, the whole pixel range: sigma is in [0,1] pixel units "
            f"(did you mean {value:g}/255?)"
        )
    return value


def check_draws(n0: int, n: int, alpha: float) -> None:
    """n0 and n at least 1, alpha in (0, 1): one line saying which to change."""
    for name, value in (("--n0", n0), ("--n", n)):
        if int(value) != value or value < 1:
            raise CertifyArgumentError(f"{name} counts noisy draws and must be at least 1, got "
                                       f"{value}")  # fmt: skip
    if not 0 < alpha < 1:
        raise CertifyArgumentError(
            f"--alpha is the probability that a certificate is wrong and must be in (0, 1), e.g. "
            f"0.001; got {alpha}"
        )


@dataclass(frozen=True)
class Certificate:
    """CERTIFY's answer for one input: the class (ABSTAIN if none), its L2 radius (pixel units,
    0 when abstaining), the lower bound on its probability and its count of the n draws."""

    prediction: int
    radius: float
    p_lower: float
    count: int

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN


class Smooth:
    """A classifier smoothed with Gaussian noise of standard deviation ``sigma`` (pixel units).

    ``model`` maps [0, 1] images (N, C, H, W) to logits; ``seed`` keys the noise. A single input
    is (C, H, W); ``sample_id`` (its index in the test set) keys its draws, so the same sample
    gets the same draws wherever it is certified.
    """

    def __init__(self, model: nn.Module, sigma: float, *, seed: int = 0,
                 num_classes: int | None = None) -> None:  # fmt: skip
        self.model = model
        self.sigma = check_sigma(sigma, "sigma")
        self.seed = int(seed)
        self.num_classes = num_classes

    # ------------------------------------------------------------------ counting
    def counts(
        self,
        inputs: Tensor,
        n: int,
        *,
        sample_id: int,
        purpose: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_draws: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """How often each class wins over ``n`` noisy copies of one input (C, H, W): int64
        counts, one per class. ``on_draws(k)`` is told of each chunk of k draws done."""
        if batch_size < 1:
            raise CertifyArgumentError(f"--batch-size must be at least 1, got {batch_size}")
        with torch.no_grad(), attack_mode(self.model):  # inference_mode: keyed_bits caches
            classes = self._classes(inputs)
            total = torch.zeros(classes, dtype=torch.int64, device=inputs.device)
            for start in range(0, n, batch_size):
                rows = min(batch_size, n - start)
                noise = sample_noise(self.seed, sample_id, np.arange(start, start + rows), purpose)
                batch = noise.normal((rows, *inputs.shape), device=inputs.device,
                                     dtype=inputs.dtype)  # fmt: skip
                batch.mul_(self.sigma).add_(inputs)
                winners = self.model(batch).argmax(1)
                total += torch.bincount(winners, minlength=classes)
                if on_draws is not None:
                    on_draws(rows)
        return total.cpu().numpy()

    def _classes(self, inputs: Tensor) -> int:
        if self.num_classes is None:
            self.num_classes = int(self.model(inputs.unsqueeze(0)).shape[1])
        return self.num_classes

    # ------------------------------------------------------------------ PREDICT / CERTIFY
    def predict(
        self,
        inputs: Tensor,
        n: int,
        alpha: float,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        sample_ids: Tensor | list[int] | None = None,
    ) -> Tensor:
        """PREDICT: the top class of n draws per input, or ABSTAIN where a two-sided binomial
        test cannot tell it from the runner-up at level ``alpha`` (wrong with probability at
        most alpha). ``inputs`` (N, C, H, W) or (C, H, W); int64 classes, (N,) or a scalar."""
        check_draws(1, n, alpha)
        batch, ids = _as_batch(inputs, sample_ids)
        out = []
        for row, sample_id in zip(batch, ids, strict=True):
            counts = self.counts(row, n, sample_id=sample_id, purpose=PREDICTION,
                                 batch_size=batch_size)  # fmt: skip
            top2 = np.argsort(counts, kind="stable")[::-1][:2]
            count_a = int(counts[top2[0]])
            count_b = int(counts[top2[1]]) if len(top2) > 1 else 0
            out.append(ABSTAIN if binomial_p_value(count_a, count_b) > alpha else int(top2[0]))
        result = torch.tensor(out, dtype=torch.int64)
        return result if inputs.dim() == 4 else result[0]

    def certify(
        self,
        inputs: Tensor,
        n0: int,
        n: int,
        alpha: float,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        sample_ids: Tensor | list[int] | None = None,
    ) -> list[Certificate]:
        """CERTIFY for each input of (N, C, H, W) (or one (C, H, W)): a list of Certificates."""
        check_draws(n0, n, alpha)
        batch, ids = _as_batch(inputs, sample_ids)
        return [self.certify_one(row, n0, n, alpha, sample_id=sample_id, batch_size=batch_size)
                for row, sample_id in zip(batch, ids, strict=True)]  # fmt: skip

    def certify_one(
        self,
        inputs: Tensor,
        n0: int,
        n: int,
        alpha: float,
        *,
        sample_id: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
        on_draws: Callable[[int], None] | None = None,
    ) -> Certificate:
        """CERTIFY for one input (C, H, W): the class most frequent in n0 selection draws, then
        its count in n fresh estimation draws, its one-sided Clopper-Pearson lower bound
        p_lower at level alpha, and the radius sigma * Phi^-1(p_lower); ABSTAIN if
        p_lower < 1/2."""
        selection = self.counts(inputs, n0, sample_id=sample_id, purpose=SELECTION,
                                batch_size=batch_size, on_draws=on_draws)  # fmt: skip
        guess = int(np.argmax(selection))
        estimation = self.counts(inputs, n, sample_id=sample_id, purpose=ESTIMATION,
                                 batch_size=batch_size, on_draws=on_draws)  # fmt: skip
        count = int(estimation[guess])
        p_lower = clopper_pearson_lower(count, n, alpha)
        if p_lower < 0.5:
            return Certificate(ABSTAIN, 0.0, p_lower, count)
        return Certificate(guess, radius(self.sigma, p_lower), p_lower, count)


def smooth(model: nn.Module, sigma: float, *, seed: int = 0) -> Smooth:
    """The Gaussian-smoothed classifier of ``model`` at noise level ``sigma`` (pixel units),
    with ``predict`` and ``certify``."""
    if not isinstance(model, nn.Module):
        raise CertifyArgumentError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return Smooth(model, sigma, seed=seed)


def _as_batch(inputs: Tensor, sample_ids: Tensor | list[int] | None) -> tuple[Tensor, list[int]]:
    if inputs.dim() not in (3, 4):
        raise CertifyArgumentError(
            f"inputs must be one image (C, H, W) or a batch (N, C, H, W), got shape "
            f"{tuple(inputs.shape)}"
        )
    batch = inputs if inputs.dim() == 4 else inputs.unsqueeze(0)
    ids = list(range(len(batch))) if sample_ids is None else [int(i) for i in sample_ids]
    if len(ids) != len(batch):
        raise CertifyArgumentError(f"{len(ids)} sample_ids for {len(batch)} inputs")
    return batch, ids
