"""grad_alignment: exactly 1 for a linear model, GradAlign's zero-gradient convention, the same
eta for a point however it is batched, and the same numbers for the same seed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advkit.alignment import gradient_cosines, measure_alignment
from advkit.analysis import ANALYSES, AnalysisContext
from advkit.noise import sample_noise
from tests.analysis.run_context import run_context
from tests.conftest import requires_fashion_mnist


def _context(model: nn.Module, n: int = 32, norm: str = "linf", eps: float = 0.3, seed: int = 0):
    generator = torch.Generator().manual_seed(1)
    inputs = torch.rand(n, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 2, (n,), generator=generator)
    return AnalysisContext(model.eval(), inputs, labels, eps, norm, 2, seed=seed)


def _nonlinear() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 2))


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.3), ("l2", 3.0)])
def test_a_linear_model_is_perfectly_aligned(norm, eps):
    """Two classes: grad_x CE = (p_1 - [y = 1]) (w_1 - w_0), one direction at every x."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 2))
    result = ANALYSES.get("grad_alignment")(_context(model, norm=norm, eps=eps))
    assert result.summary["mean"] == pytest.approx(1.0, abs=1e-5)
    assert result.summary["std"] == pytest.approx(0.0, abs=1e-5)
    assert result.summary["zero_gradient_fraction"] == 0.0
    assert sum(result.summary["histogram"]["counts"]) == 32
    assert set(result.figures) == {"histogram"} and "**1.000**" in result.markdown


def test_a_nonlinear_model_is_not():
    result = ANALYSES.get("grad_alignment")(_context(_nonlinear()))
    assert result.summary["mean"] < 0.999


def test_zero_gradients_count_as_aligned_and_are_counted():
    """GradAlign's avg_cos_np: 0/0 -> 1. A model with constant logits has zero input gradients."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 2))
    nn.init.zeros_(model[1].weight)
    summary = ANALYSES.get("grad_alignment")(_context(model)).summary
    assert summary["mean"] == 1.0 and summary["zero_gradient_fraction"] == 1.0
    assert summary["mean_nonzero"] is None


def test_the_regularizer_and_the_measurement_share_the_cosine():
    """Zero rows are undefined (valid False) and the others exact, as the regularizer uses them."""
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[6.0, 8.0], [1.0, 1.0], [0.0, 2.0]])
    cos, valid = gradient_cosines(a, b)
    assert valid.tolist() == [True, False, True]
    torch.testing.assert_close(cos, torch.tensor([1.0, 0.0, 0.0]))


def test_eta_is_the_points_own_however_they_are_batched():
    ctx = _context(_nonlinear(), n=20)
    noise = lambda: sample_noise(0, 0, torch.arange(20), 5)  # noqa: E731
    whole = measure_alignment(ctx.model, ctx.inputs, ctx.labels, eps=0.3, norm="linf",
                              noise=noise())  # fmt: skip
    batched = measure_alignment(ctx.model, ctx.inputs, ctx.labels, eps=0.3, norm="linf",
                                noise=noise(), batch_size=7)  # fmt: skip
    torch.testing.assert_close(batched.cos, whole.cos)


def test_the_same_seed_gives_the_same_numbers_and_another_seed_other_eta():
    run = lambda seed: ANALYSES.get("grad_alignment")(_context(_nonlinear(), seed=seed))  # noqa: E731
    assert run(0).summary == run(0).summary
    assert run(0).summary["histogram"] != run(3).summary["histogram"]


def test_a_zero_radius_is_not_measured():
    summary = ANALYSES.get("grad_alignment")(_context(_nonlinear(), eps=0.0)).summary
    assert summary["mean"] is None and "eps" in summary["skipped"]


@requires_fashion_mnist
def test_adversarial_training_aligns_the_gradients(trained_runs):
    results = {
        label: ANALYSES.get("grad_alignment")(run_context(run, examples=300))
        for label, run in trained_runs.items()
    }
    assert results["pgd"].summary["mean"] > results["natural"].summary["mean"]
    figures = ANALYSES.meta("grad_alignment")["compare"](results)
    assert set(figures) == {"histogram"}
