"""The statistics of randomized smoothing: Clopper-Pearson bounds, radii and their limits.

Cohen, Rosenfeld and Kolter, "Certified Adversarial Robustness via Randomized Smoothing", ICML
2019 (arXiv:1902.02918). The smoothed classifier g(x) = argmax_c P(f(x + e) = c), e ~ N(0,
sigma^2 I), is robust at x within L2 radius sigma * Phi^-1(p_A) when the top class has
probability p_A > 1/2 (Theorem 1). CERTIFY estimates p_A from n noisy draws by the one-sided
Clopper-Pearson lower bound at level alpha and abstains below 1/2.

Since the bound of n draws that all agree is alpha^(1/n), no radius above
sigma * Phi^-1(alpha^(1/n)) can ever be certified with these n and alpha, whatever the model:
:func:`radius_cap`. Every point abstains when alpha^(1/n) < 1/2, i.e. n < log2(1/alpha):
:func:`needed_n`. All distributions come from scipy.
"""

from __future__ import annotations

import math

from scipy.stats import beta, binomtest, norm


def clopper_pearson_lower(successes: int, n: int, alpha: float) -> float:
    """The one-sided (1 - alpha) Clopper-Pearson lower bound on a binomial proportion from
    ``successes`` of ``n`` trials: the alpha quantile of Beta(k, n - k + 1); 0 for k = 0."""
    _check_counts(successes, n)
    if successes == 0:
        return 0.0
    return float(beta.ppf(alpha, successes, n - successes + 1))


def clopper_pearson_interval(successes: int, n: int, confidence: float) -> tuple[float, float]:
    """The two-sided exact (Clopper-Pearson) interval at level ``confidence`` for ``successes``
    of ``n``; (0, 1) for n = 0."""
    if n == 0:
        return 0.0, 1.0
    _check_counts(successes, n)
    tail = (1 - confidence) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, n - successes + 1))
    high = 1.0 if successes == n else float(beta.ppf(1 - tail, successes + 1, n - successes))
    return low, high


def radius(sigma: float, p_lower: float) -> float:
    """The certified L2 radius sigma * Phi^-1(p_lower) (pixel units); meaningful for
    p_lower >= 1/2 (below, CERTIFY abstains)."""
    return float(sigma * norm.ppf(p_lower))


def radius_cap(sigma: float, n: int, alpha: float) -> float:
    """The largest radius n draws at level alpha can certify: sigma * Phi^-1(alpha^(1/n)), the
    radius when all n draws agree; 0 when even then the bound stays below 1/2."""
    p_all = alpha ** (1.0 / n)
    return radius(sigma, p_all) if p_all >= 0.5 else 0.0


def needed_n(alpha: float) -> int:
    """The smallest n whose unanimous draws give a bound above 1/2 (a positive radius):
    alpha^(1/n) > 1/2, i.e. n > log2(1/alpha)."""
    n = max(1, math.floor(math.log2(1.0 / alpha)) + 1)
    while alpha ** (1.0 / n) <= 0.5:  # rounding at an exact power of two
        n += 1
    return n


def binomial_p_value(count_a: int, count_b: int) -> float:
    """Two-sided binomial test of count_a against count_b at p = 1/2 (PREDICT's test between
    the two most frequent classes)."""
    total = count_a + count_b
    if total == 0:
        return 1.0
    return float(binomtest(count_a, total, 0.5).pvalue)


def _check_counts(successes: int, n: int) -> None:
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}")


__all__ = [
    "binomial_p_value", "clopper_pearson_interval", "clopper_pearson_lower", "needed_n",
    "radius", "radius_cap",
]  # fmt: skip
