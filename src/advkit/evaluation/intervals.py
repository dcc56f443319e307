"""Confidence intervals for accuracies measured on n test examples.

An accuracy from 1000 examples is a binomial proportion whose standard error is about 1.5 points
near 50%; a report that prints it without an interval invites reading noise as a difference.
The Wilson score interval is used: closed form, never outside [0, 1], and close to nominal
coverage even for accuracies near 0 or 1 where the normal (Wald) interval fails.
"""

from __future__ import annotations

import math
from statistics import NormalDist

DEFAULT_CONFIDENCE = 0.95
METHOD = "wilson"


def wilson_interval(
    successes: int, n: int, confidence: float = DEFAULT_CONFIDENCE
) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` for ``successes`` out of ``n`` trials.

    For n = 0 nothing is known and the interval is (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95, got {confidence}")
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At p = 0 or 1 the bound is exactly 0 or 1; keep it so despite rounding.
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return low, high


def accuracy_intervals(
    accuracies: dict[str, float], n: int, confidence: float = DEFAULT_CONFIDENCE
) -> dict[str, list[float]]:
    """``{column: [low, high]}`` for accuracies (fractions of ``n`` examples)."""
    intervals = {}
    for name, acc in accuracies.items():
        low, high = wilson_interval(round(acc * n), n, confidence)
        # Rounded outwards to 4 decimals (0.01 points): the printed interval never shrinks.
        intervals[name] = [math.floor(low * 1e4) / 1e4, math.ceil(high * 1e4) / 1e4]
    return intervals
