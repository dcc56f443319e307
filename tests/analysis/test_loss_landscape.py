"""loss_landscape: the numbers mean what they say (a linear model's slope is ||grad||_1), the
grid is batched without changing a value, points stay images, the seed fixes everything, and
adversarial training flattens the landscape."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advkit.analysis import ANALYSES
from advkit.analysis.loss_landscape import adversarial_direction, plane_losses, rademacher
from advkit.analysis.runner import load_run
from advkit.config_values import ConfigError
from tests.analysis.analysis_helpers import linear_context, loss_gradients

landscape = ANALYSES.get("loss_landscape")
TINY = {"grid": 5, "average": 2, "shown": 0}


@pytest.mark.parametrize(("norm", "dual"), [("linf", 1), ("l2", 2)])
def test_a_linear_models_loss_rises_along_the_adversarial_direction_with_the_dual_norm(norm, dual):
    # Along sign(g) (L-inf) the directional derivative is ||g||_1; along g/||g||_2 it is ||g||_2.
    ctx = linear_context(eps=1e-4, norm=norm, **TINY)
    result = landscape(ctx)
    slope = loss_gradients(ctx).flatten(1).norm(p=dual, dim=1).mean()
    assert result.summary["rise_at_eps"]["adversarial"] / ctx.eps == pytest.approx(
        float(slope), rel=1e-2
    )
    # Cross-entropy is convex along any line of a linear model: no negative curvature, and the
    # loss grows on the adversarial side of the profile.
    assert result.summary["curvature"]["adversarial"] >= -1e-3
    profile = result.summary["profile"]
    half = [v for r, v in zip(profile["radii"], profile["adversarial"], strict=True) if r >= 0]
    assert half == sorted(half) and half[-1] > half[0]


def test_a_random_direction_rises_far_less_than_the_adversarial_one():
    summary = landscape(linear_context(eps=1e-2, points=32, **TINY)).summary
    rise = summary["rise_at_eps"]
    assert abs(rise["random"]) < 0.2 * rise["adversarial"]


def test_the_directions_have_unit_norm_in_the_threat_models_norm():
    ctx = linear_context(points=4)
    generator = torch.Generator().manual_seed(0)
    assert rademacher(ctx.inputs, "linf", generator).abs().amax() == 1
    l2 = rademacher(ctx.inputs, "l2", generator).flatten(1).norm(dim=1)
    assert torch.allclose(l2, torch.ones(4))
    direction = adversarial_direction(ctx.model, ctx.inputs, ctx.labels, "l2")
    assert torch.allclose(direction.flatten(1).norm(dim=1), torch.ones(4), atol=1e-5)


def test_batched_plane_losses_equal_one_point_at_a_time():
    ctx = linear_context(points=3)
    first = rademacher(ctx.inputs, "linf", torch.Generator().manual_seed(1))
    second = rademacher(ctx.inputs, "linf", torch.Generator().manual_seed(2))
    coords = torch.rand(7, 2) - 0.5
    batched = plane_losses(ctx.model, ctx.inputs, ctx.labels, first, second, coords, 5)
    with torch.no_grad():
        for i in range(3):
            for p in range(7):
                image = ctx.inputs[i] + coords[p, 0] * first[i] + coords[p, 1] * second[i]
                logits = ctx.model(image.clamp(0, 1)[None])
                loss = nn.functional.cross_entropy(logits, ctx.labels[i : i + 1])
                assert batched[i, p] == pytest.approx(float(loss), rel=1e-5)


class _Recorder(nn.Module):
    """The linear model, recording the range of what it is shown."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model, self.low, self.high = model, 1.0, 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low, high = float(x.detach().min()), float(x.detach().max())
        self.low, self.high = min(self.low, low), max(self.high, high)
        return self.model(x)


def test_every_point_of_the_landscape_is_clipped_to_the_unit_box():
    ctx = linear_context(eps=0.5, **TINY)  # +-1 around points in (0.3, 0.7): far outside
    ctx.model = _Recorder(ctx.model)
    landscape(ctx)
    assert ctx.model.low == 0.0 and ctx.model.high == 1.0


def test_the_same_seed_gives_the_same_numbers_and_another_seed_other_random_ones():
    first = landscape(linear_context(eps=0.05, **TINY)).summary
    assert landscape(linear_context(eps=0.05, **TINY)).summary == first
    other = landscape(linear_context(eps=0.05, seed=1, **TINY)).summary
    assert other["rise_at_eps"]["adversarial"] == first["rise_at_eps"]["adversarial"]
    assert other["rise_at_eps"]["random"] != first["rise_at_eps"]["random"]


@pytest.mark.parametrize("options", [{"grid": 4}, {"grid": 1}, {"extent": 0.0}, {"average": 0}])
def test_bad_options_are_refused_naming_the_option(options):
    with pytest.raises(ConfigError, match="loss_landscape"):
        landscape(linear_context(**{**TINY, **options}))


def test_adversarial_training_gives_the_flatter_landscape(trained_runs):
    summaries = {}
    for method, folder in trained_runs.items():
        ctx = load_run(folder, examples=64).context
        ctx.options = {"grid": 5, "average": 4, "shown": 1}
        result = landscape(ctx)
        assert set(result.figures) == {"profile", "surface", "contour"}
        summaries[method] = result.summary
    natural, robust = summaries["natural"], summaries["pgd"]
    assert robust["rise_at_eps"]["adversarial"] < 0.5 * natural["rise_at_eps"]["adversarial"]
    assert robust["curvature"]["adversarial"] < natural["curvature"]["adversarial"]
