"""Small contexts for the analyses' tests: a linear model whose gradients are known in closed
form, and the shrunk defaults that keep a whole ``advkit analyze`` within a few seconds."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advkit.analysis import AnalysisContext, input_gradients, large_eps, loss_landscape, runner

#: Options of the analyses during CLI tests: every figure still drawn, little compute.
SMALL_OPTIONS = [
    (loss_landscape.OPTIONS, {"grid": 5, "average": 2, "shown": 1}),
    (large_eps.OPTIONS, {"count": 2, "shown": 1, "steps": 2}),
    (input_gradients.OPTIONS, {"shown": 2}),
]
SMALL_EXAMPLES = 16


def shrink_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the analyses' defaults (and the default number of test points) small, so that the
    CLI's default path (analysis.json, not a tagged file) is tested at CI speed."""
    for options, values in SMALL_OPTIONS:
        for key, value in values.items():
            monkeypatch.setitem(options, key, value)
    monkeypatch.setattr(runner, "DEFAULT_EXAMPLES", SMALL_EXAMPLES)


def linear_model(dim: int = 28 * 28, classes: int = 10, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(dim, classes)).eval()


def linear_context(
    points: int = 8, *, eps: float = 1e-3, norm: str = "linf", seed: int = 0, **options: object
) -> AnalysisContext:
    """A linear model on ``points`` 1x28x28 points inside (0.3, 0.7): clipping never acts at
    radii below 0.3."""
    generator = torch.Generator().manual_seed(123)
    inputs = 0.3 + 0.4 * torch.rand(points, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (points,), generator=generator)
    return AnalysisContext(
        model=linear_model(), inputs=inputs, labels=labels, eps=eps, norm=norm, num_classes=10,
        seed=seed, options=dict(options),
    )  # fmt: skip


def loss_gradients(ctx: AnalysisContext) -> torch.Tensor:
    """grad_x CE at each test point of ``ctx``, (N, C, H, W)."""
    inputs = ctx.inputs.clone().requires_grad_(True)
    loss = nn.functional.cross_entropy(ctx.model(inputs), ctx.labels, reduction="sum")
    return torch.autograd.grad(loss, inputs)[0]
