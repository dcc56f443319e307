"""Robust accuracy against the radius: PGD-20 at each eps of a list (eps = 0 is clean accuracy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from advkit.evaluation.evaluate import ProgressFn, evaluate
from advkit.evaluation.suites import Suite, build_suite

_CLEAN_ONLY = Suite("clean", ())


def eps_sweep(
    model: nn.Module,
    inputs_or_data: Any,
    labels: Tensor | None,
    eps_values: Sequence[float],
    *,
    norm: str = "linf",
    batch_size: int = 256,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> list[tuple[float, float]]:
    """``[(eps, robust accuracy under PGD-20), ...]`` in the order of ``eps_values`` (pixel units).

    Takes the same inputs as :func:`advkit.evaluation.evaluate`.
    """
    if not eps_values:
        raise ValueError("the eps sweep needs at least one radius, e.g. 0,0.05,0.1")
    if any(eps < 0 for eps in eps_values):
        raise ValueError(f"sweep radii must be >= 0 (pixel units), got {list(eps_values)}")
    points = []
    for eps in eps_values:
        suite = build_suite("quick", eps=eps, norm=norm, seed=seed) if eps > 0 else _CLEAN_ONLY
        result = evaluate(
            model, inputs_or_data, labels, suite, eps=eps, norm=norm, batch_size=batch_size,
            seed=seed, progress=progress,
        )  # fmt: skip
        points.append((float(eps), result.accuracies()["worst_case"]))
    return points
