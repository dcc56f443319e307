"""The statistics of certification against scipy's own tests and the closed forms."""

from __future__ import annotations

import math

import pytest
from scipy.stats import beta, binomtest, norm

from advkit.certification.statistics import (
    binomial_p_value,
    clopper_pearson_interval,
    clopper_pearson_lower,
    needed_n,
    radius,
    radius_cap,
)

COUNTS = [(0, 10), (1, 10), (5, 10), (9, 10), (10, 10), (73, 100), (99_000, 100_000)]


@pytest.mark.parametrize(("k", "n"), COUNTS)
@pytest.mark.parametrize("alpha", [0.001, 0.05])
def test_lower_bound_is_scipys_one_sided_exact_interval(k: int, n: int, alpha: float) -> None:
    expected = 0.0 if k == 0 else beta.ppf(alpha, k, n - k + 1)
    assert clopper_pearson_lower(k, n, alpha) == pytest.approx(expected, abs=1e-12)
    low, high = binomtest(k, n, alternative="greater").proportion_ci(1 - alpha, method="exact")
    assert clopper_pearson_lower(k, n, alpha) == pytest.approx(low, abs=1e-9)
    assert high == 1.0


@pytest.mark.parametrize(("k", "n"), COUNTS)
def test_two_sided_interval_is_scipys_exact_interval(k: int, n: int) -> None:
    ci = binomtest(k, n).proportion_ci(0.95, method="exact")
    assert clopper_pearson_interval(k, n, 0.95) == pytest.approx((ci.low, ci.high), abs=1e-9)


@pytest.mark.parametrize(("sigma", "n", "alpha"), [(0.25, 100_000, 0.001), (0.5, 1000, 0.01),
                                                   (1.0, 100, 0.001)])  # fmt: skip
def test_radius_cap_is_the_radius_of_unanimous_draws(sigma: float, n: int, alpha: float) -> None:
    cap = radius_cap(sigma, n, alpha)
    assert cap == pytest.approx(sigma * norm.ppf(alpha ** (1 / n)), rel=1e-12)
    assert cap == pytest.approx(radius(sigma, clopper_pearson_lower(n, n, alpha)), rel=1e-9)
    # and no count certifies more
    assert radius(sigma, clopper_pearson_lower(n - 1, n, alpha)) < cap


@pytest.mark.parametrize("alpha", [0.5, 0.1, 0.01, 0.001, 1e-6, 0.25])
def test_needed_n_is_the_first_n_with_a_positive_radius(alpha: float) -> None:
    n = needed_n(alpha)
    assert radius_cap(1.0, n, alpha) > 0
    assert n == 1 or radius_cap(1.0, n - 1, alpha) <= 0
    assert n >= math.log2(1 / alpha)


def test_binomial_p_value_is_scipys() -> None:
    for a, b in [(60, 40), (500, 480), (10, 0), (0, 0)]:
        expected = 1.0 if a + b == 0 else binomtest(a, a + b, 0.5).pvalue
        assert binomial_p_value(a, b) == pytest.approx(expected)


def test_counts_outside_the_trials_are_refused() -> None:
    with pytest.raises(ValueError, match="successes"):
        clopper_pearson_lower(11, 10, 0.01)
