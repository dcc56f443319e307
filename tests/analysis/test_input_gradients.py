"""input_gradients: the proxy for "looks like the object" measures that, the gradients are the
loss's own, and adversarial training makes them more object-like."""

from __future__ import annotations

import pytest
import torch

from advkit.analysis import ANALYSES
from advkit.analysis.input_gradients import (
    alignment,
    compare_gradients,
    image_correlation,
    input_gradients,
)
from advkit.analysis.runner import load_run
from tests.analysis.analysis_helpers import linear_context, loss_gradients

analyze = ANALYSES.get("input_gradients")


def test_the_image_correlation_is_one_for_the_image_itself_and_small_for_noise():
    images = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(image_correlation(images, images), torch.ones(16, dtype=torch.float64))
    assert torch.allclose(image_correlation(images, -images), torch.ones(16, dtype=torch.float64))
    noise = torch.randn(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    assert image_correlation(images, noise).abs().mean() < 0.1
    assert torch.allclose(alignment(images, -2 * images), torch.ones(16, dtype=torch.float64))


def test_the_gradients_are_the_losss_input_gradients_in_any_batch_size():
    ctx = linear_context(points=5)
    expected = loss_gradients(ctx)
    for batch_size in (2, 100):
        grads = input_gradients(ctx.model, ctx.inputs, ctx.labels, batch_size)
        assert torch.allclose(grads, expected, atol=1e-6)


def test_the_summary_and_figure_of_a_linear_model():
    ctx = linear_context(points=6, shown=3)
    result = analyze(ctx)
    correlation = image_correlation(ctx.inputs, loss_gradients(ctx)).mean()
    assert result.summary["examples"] == 6
    assert result.summary["image_correlation"] == pytest.approx(float(correlation), abs=1e-4)
    assert set(result.figures) == {"grid"} and len(result.data["grads"]) == 3
    assert analyze(linear_context(points=6, shown=3)).summary == result.summary  # no randomness


def test_adversarial_training_gives_the_more_object_like_gradients(trained_runs):
    summaries = {
        method: analyze(load_run(folder, examples=64).context).summary
        for method, folder in trained_runs.items()
    }
    natural, robust = summaries["natural"], summaries["pgd"]
    assert robust["alignment"] > natural["alignment"] + 0.05  # about 0.18 against 0.05


def test_runs_side_by_side_share_the_image_row_only_when_they_saw_the_same_points():
    same = {label: analyze(linear_context(points=3, shown=2)) for label in ("a", "b")}
    assert len(compare_gradients(same)["grid"].axes) == 3 * 2  # images, a, b
    other = linear_context(points=3, shown=2)
    other.inputs = other.inputs.flip(0)
    differ = {"a": same["a"], "b": analyze(other)}
    assert len(compare_gradients(differ)["grid"].axes) == 4 * 2  # each run's images above its own
