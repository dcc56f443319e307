"""large_eps: the radii, the attack's budget, what the numbers count, and that a natural model
is fooled into any class more easily than an adversarially trained one."""

from __future__ import annotations

import math

import pytest

from advkit.analysis import ANALYSES
from advkit.analysis.large_eps import large_radii
from advkit.analysis.runner import load_run
from advkit.config_values import ConfigError
from tests.analysis.analysis_helpers import linear_context

analyze = ANALYSES.get("large_eps")


def test_the_large_radii_follow_the_standard_pairs_of_budgets():
    # MNIST 0.3 <-> 2.0 and CIFAR-10 8/255 <-> 0.5: L2 ~ L-inf * sqrt(dim) / 4.
    assert large_radii(0.3, "linf", 784, 1.0)["l2"] == pytest.approx(2.1)
    assert large_radii(8 / 255, "linf", 3072, 1.0)["l2"] == pytest.approx(0.434, abs=1e-3)
    radii = large_radii(0.1, "linf", 784, 4.0)
    assert radii == pytest.approx({"linf": 0.4, "l2": 2.8})
    assert large_radii(2.8, "l2", 784, 1.0) == pytest.approx({"linf": 0.4, "l2": 2.8})
    capped = large_radii(0.5, "linf", 784, 4.0)
    assert capped["linf"] == 1.0 and capped["l2"] == pytest.approx(14.0)
    assert large_radii(50.0, "l2", 4, 4.0)["l2"] == pytest.approx(math.sqrt(4))


def test_the_targeted_images_keep_to_their_radius_and_the_unit_box():
    ctx = linear_context(points=3, eps=0.05, count=3, shown=3, steps=5)
    result = analyze(ctx)
    assert result.summary["linf"]["radius"] == pytest.approx(0.2)
    assert result.summary["l2"]["radius"] == pytest.approx(1.4)
    for norm, p in (("linf", math.inf), ("l2", 2)):
        adversarial = result.data[norm]["adversarial"]  # (points, classes, C, H, W)
        assert adversarial.shape == (3, 10, 1, 28, 28)
        assert adversarial.min() >= 0 and adversarial.max() <= 1
        delta = adversarial - ctx.inputs[:, None]
        radius = result.data[norm]["radius"]
        assert delta.flatten(2).norm(p=p, dim=2).max() <= radius * (1 + 1e-5)
        assert 0 <= result.summary[norm]["success_rate"] <= 1
    assert set(result.figures) == {"linf", "l2"}
    assert analyze(linear_context(points=3, eps=0.05, count=3, shown=3, steps=5)).summary == (
        result.summary
    )  # no random start: the same numbers every time


def test_a_linear_model_is_driven_to_every_class_at_a_large_radius():
    # A linear model's targeted CE is convex: PGD within a large L-inf ball reaches any class.
    result = analyze(linear_context(points=3, eps=0.25, shown=0, steps=20, l2=28.0))
    assert result.summary["linf"]["success_rate"] == 1.0
    assert result.summary["l2"]["success_rate"] == 1.0
    assert result.figures == {}


@pytest.mark.parametrize("options", [{"factor": 0.0}, {"count": 0}, {"steps": 0}, {"linf": -1.0}])
def test_bad_options_are_refused(options):
    with pytest.raises(ConfigError, match="large_eps"):
        analyze(linear_context(points=2, **options))


def test_a_natural_model_is_driven_to_a_target_more_confidently_than_a_robust_one(trained_runs):
    confidence = {}
    for method, folder in trained_runs.items():
        ctx = load_run(folder, examples=8).context
        ctx.options = {"count": 4, "shown": 0, "steps": 10}
        confidence[method] = analyze(ctx).summary["linf"]["target_confidence"]
    assert confidence["natural"] > confidence["pgd"] + 0.1
