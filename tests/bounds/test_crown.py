"""CROWN-IBP margins: sound (below every margin found in the box), exact where the network is
affine over the box, tighter than interval bounds on a real net; chains only, refusals named."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from advkit.attacks import pgd
from advkit.bounds import (
    UnsupportedLayerError,
    certify_intervals,
    crown_ibp_margin_lower_bounds,
    margin_lower_bounds,
)
from advkit.models import create_model
from advkit.models.base import NormalizedModel


def margins_at(model: nn.Module, points: Tensor, labels: Tensor) -> Tensor:
    with torch.no_grad():
        logits = model(points)
    return logits.gather(1, labels[:, None]) - logits


@pytest.mark.parametrize("name", ["cnn-small", "cnn-bn"])
def test_crown_ibp_margins_are_sound_and_tighter_than_intervals(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, 10, (0.13,), (0.31,)).eval()
    if name == "cnn-bn":  # running statistics other than the fresh 0 / 1
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(4, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (4,), generator=generator)
    eps = 0.01
    lower, upper = (inputs - eps).clamp(0, 1), (inputs + eps).clamp(0, 1)
    crown = crown_ibp_margin_lower_bounds(model, lower, upper, labels)
    ibp = margin_lower_bounds(model, lower, upper, labels)
    points = lower + torch.rand(32, *inputs.shape, generator=generator) * (upper - lower)
    found = margins_at(model, points.flatten(0, 1), labels.repeat(32)).view(32, 4, 10)
    adv = pgd(model, inputs, labels, eps=eps, steps=10)
    found = torch.cat([found, margins_at(model, adv, labels)[None]])
    assert (crown <= found.min(0).values + 1e-4).all()
    others = ~torch.eye(10, dtype=torch.bool)[labels]
    assert (crown[others] > ibp[others]).float().mean() > 0.9  # backward bounds: tighter here


def test_crown_is_exact_where_every_relu_is_stable() -> None:
    """Linear -> ReLU (all active on the box) -> Linear is affine there: the margin's minimum
    over the box is closed form, and CROWN reaches it where interval bounds do not."""
    torch.manual_seed(0)
    first, second = nn.Linear(6, 8), nn.Linear(8, 3)
    with torch.no_grad():
        first.weight.uniform_(-0.1, 0.1)
        first.bias.fill_(2.0)  # pre-activations in [1.4, 2.6] on [0, 1]^6: always active
    model = nn.Sequential(first, nn.ReLU(), second)
    lower = torch.rand(2, 6) * 0.5
    upper = lower + 0.3
    labels = torch.tensor([0, 2])
    crown = crown_ibp_margin_lower_bounds(model, lower, upper, labels)
    # margin_j(x) = (e_y - e_j) W2 (W1 x + b1) + (e_y - e_j) b2: linear in x.
    weight = second.weight @ first.weight
    bias = second.weight @ first.bias + second.bias
    diff_w = weight[labels][:, None, :] - weight[None]  # (N, K, in)
    diff_b = bias[labels][:, None] - bias[None]
    exact = diff_b + torch.where(diff_w > 0, lower[:, None], upper[:, None]).mul(diff_w).sum(-1)
    torch.testing.assert_close(crown, exact, rtol=1e-5, atol=1e-5)
    ibp = margin_lower_bounds(model, lower, upper, labels)
    assert (ibp <= crown + 1e-6).all() and (ibp < crown - 1e-3).any()


def test_certify_with_crown_ibp_verifies_at_least_what_intervals_verify() -> None:
    torch.manual_seed(0)
    model = create_model("cnn-small", 10, (0.13,), (0.31,)).eval()
    inputs = torch.rand(16, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    labels = model(inputs).argmax(1)  # correct everywhere: what is verified depends on bounds
    ibp = certify_intervals(model, inputs, labels, 1e-4)  # verifies 2 of 16, CROWN-IBP 15
    crown = certify_intervals(model, inputs, labels, 1e-4, bounds="crown-ibp")
    assert crown.bounds == "crown-ibp" and crown.to_dict()["bounds"] == "crown-ibp"
    assert (crown.verified >= ibp.verified).all()
    assert (crown.worst_margin >= ibp.worst_margin - 1e-6).all()
    assert crown.verified.sum() >= ibp.verified.sum() + 5


def test_pooling_and_joins_are_refused_by_crown_in_one_line() -> None:
    pooled = create_model("cnn-madry", 10, (0.13,), (0.31,)).eval()
    box = torch.rand(1, 1, 28, 28) * 0.5
    with pytest.raises(
        UnsupportedLayerError, match=r"CROWN-IBP .* 'net\.features\.5' \(MaxPool2d\)"
    ) as err:
        crown_ibp_margin_lower_bounds(pooled, box, box + 0.1, torch.tensor([3]))
    assert "\n" not in str(err.value)

    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: Tensor) -> Tensor:
            return x + self.fc(x)

    model = NormalizedModel(nn.Sequential(nn.Flatten(), Residual()), (0.5,), (0.5,))
    box = torch.rand(1, 1, 2, 2) * 0.5
    with pytest.raises(UnsupportedLayerError, match="joining 2 bounded values"):
        crown_ibp_margin_lower_bounds(model, box, box + 0.1, torch.tensor([1]))
    with pytest.raises(ValueError, match="bounds must be one of ibp, crown-ibp"):
        certify_intervals(model, box, torch.tensor([1]), 0.1, bounds="crown")
