"""Interval bounds: sound for every supported layer and for whole networks, exact for one linear
layer, tighter with elision; refusals in one line."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advkit.attacks import pgd
from advkit.bounds import (
    Interval,
    UnsupportedLayerError,
    UntraceableModelError,
    interval_bounds,
    margin_lower_bounds,
    recording_batch_stats,
)
from advkit.models import create_model
from advkit.models.base import Normalize, NormalizedModel


def box(shape: tuple[int, ...], seed: int = 0, width: float = 0.2) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    lower = torch.rand(shape, generator=generator) * (1 - width)
    return lower, lower + width * torch.rand(shape, generator=generator)


def points_in(lower: Tensor, upper: Tensor, count: int, seed: int = 1) -> Tensor:
    """``count`` points per sample: uniform in the box, and corners (where extremes often are)."""
    generator = torch.Generator().manual_seed(seed)
    shape = (count, *lower.shape)
    uniform = torch.rand(shape, generator=generator)
    corner = torch.randint(0, 2, shape, generator=generator).float()
    t = torch.where(torch.arange(count).view(-1, *[1] * lower.dim()) % 2 == 0, uniform, corner)
    return lower + t * (upper - lower)


def assert_contains(bounds: Interval, outputs: Tensor, tol: float = 1e-5) -> None:
    assert (bounds.lower <= bounds.upper).all()
    assert (outputs >= bounds.lower - tol).all(), (bounds.lower - outputs).max()
    assert (outputs <= bounds.upper + tol).all(), (outputs - bounds.upper).max()


def _bn(channels: int, dims: int) -> nn.Module:
    bn = (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(channels)
    with torch.no_grad():  # statistics and affine of either sign, as after training
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.2, 2)
        bn.weight.uniform_(-2, 2)
        bn.bias.uniform_(-1, 1)
    return bn.eval()


#: name -> (layer, input shape without the batch)
LAYERS = {
    "linear": (lambda: nn.Linear(12, 5), (12,)),
    "conv2d": (lambda: nn.Conv2d(2, 4, 3, stride=2, padding=1), (2, 6, 6)),
    "conv2d-reflect": (lambda: nn.Conv2d(2, 3, 3, padding=1, padding_mode="reflect"), (2, 5, 5)),
    "relu": (nn.ReLU, (3, 4, 4)),
    "leaky-relu": (lambda: nn.LeakyReLU(0.1), (7,)),
    "sigmoid": (nn.Sigmoid, (7,)),
    "tanh": (nn.Tanh, (7,)),
    "batchnorm2d": (lambda: _bn(3, 2), (3, 4, 4)),
    "batchnorm1d": (lambda: _bn(6, 1), (6,)),
    "maxpool2d": (lambda: nn.MaxPool2d(2), (2, 6, 6)),
    "avgpool2d": (lambda: nn.AvgPool2d(2), (2, 6, 6)),
    "adaptive-avgpool2d": (lambda: nn.AdaptiveAvgPool2d(1), (2, 5, 5)),
    "flatten": (nn.Flatten, (2, 3, 3)),
    "identity": (nn.Identity, (5,)),
    "dropout": (lambda: nn.Dropout(0.5).eval(), (5,)),
    "normalize": (lambda: Normalize((0.1, 0.5), (0.3, 0.2)), (2, 3, 3)),
}


@pytest.mark.parametrize("name", LAYERS)
def test_each_layers_bounds_contain_its_outputs_on_the_box(name: str) -> None:
    torch.manual_seed(0)
    make, shape = LAYERS[name]
    layer = make()
    # Two layers, so that a layer's bounds are used as the next one's box.
    model = nn.Sequential(layer, nn.Flatten()).eval()
    lower, upper = box((3, *shape))
    bounds = interval_bounds(model, lower, upper)
    points = points_in(lower, upper, 300)
    with torch.no_grad():
        outputs = model(points.flatten(0, 1)).view(300, 3, -1)
    assert_contains(bounds, outputs)
    # Monotone and affine rules are exact for one layer: the bounds are attained (nearly).
    if name in ("relu", "sigmoid", "tanh", "identity", "flatten", "normalize", "maxpool2d"):
        torch.testing.assert_close(bounds.upper, model(upper))
        torch.testing.assert_close(bounds.lower, model(lower))


def test_a_single_linear_layers_bounds_are_the_exact_ones() -> None:
    """max over the box of w.x + b is sum_j max(w_j l_j, w_j u_j) + b, attained at a corner."""
    torch.manual_seed(0)
    layer = nn.Linear(20, 6)
    lower, upper = box((4, 20))
    bounds = interval_bounds(layer, lower, upper)
    w, b = layer.weight, layer.bias
    products = torch.stack([lower[:, None, :] * w, upper[:, None, :] * w])  # (2, N, out, in)
    exact_upper = products.max(0).values.sum(-1) + b
    exact_lower = products.min(0).values.sum(-1) + b
    torch.testing.assert_close(bounds.upper, exact_upper, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(bounds.lower, exact_lower, rtol=1e-6, atol=1e-5)
    # ... and attained: the corner picking upper where w > 0 reaches the upper bound.
    corner = torch.where(w[None] > 0, upper[:, None, :], lower[:, None, :])  # (N, out, in)
    reached = (corner * w).sum(-1) + b
    torch.testing.assert_close(reached, bounds.upper, rtol=1e-6, atol=1e-5)


def small_cnn() -> NormalizedModel:
    torch.manual_seed(0)
    return create_model("cnn-small", 10, (0.13,), (0.31,)).eval()


def test_a_cnns_bounds_contain_random_points_and_attacks_within_the_box() -> None:
    model = small_cnn()
    generator = torch.Generator().manual_seed(0)
    inputs = torch.rand(4, 1, 28, 28, generator=generator)
    labels = torch.randint(0, 10, (4,), generator=generator)
    eps = 0.05
    lower, upper = (inputs - eps).clamp(0, 1), (inputs + eps).clamp(0, 1)
    bounds = interval_bounds(model, lower, upper)
    margins = margin_lower_bounds(model, lower, upper, labels)
    points = points_in(lower, upper, 64).flatten(0, 1)
    with torch.no_grad():
        outputs = model(points).view(64, 4, 10)
    assert_contains(bounds, outputs)
    # PGD looks for the points that minimize the margin: they stay above the margins' bound.
    adv = pgd(model, inputs, labels, eps=eps, steps=20, restarts=2)
    assert (adv >= lower - 1e-6).all() and (adv <= upper + 1e-6).all()
    with torch.no_grad():
        logits = model(adv)
    true_margins = logits.gather(1, labels[:, None]) - logits
    assert (true_margins >= margins - 1e-4).all()
    assert_contains(bounds, logits[None], tol=1e-4)


def test_elided_margins_are_at_least_as_tight_as_the_logits_bounds() -> None:
    model = small_cnn()
    inputs = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    labels = torch.arange(6)
    lower, upper = (inputs - 0.02).clamp(0, 1), (inputs + 0.02).clamp(0, 1)
    logits = interval_bounds(model, lower, upper)
    naive = logits.lower.gather(1, labels[:, None]) - logits.upper
    naive[torch.arange(6), labels] = 0.0
    elided = margin_lower_bounds(model, lower, upper, labels)
    assert (elided >= naive - 1e-5).all()
    assert (elided > naive + 1e-3).any(), "elision should tighten some margin of a real net"


class _Functional(nn.Module):
    """A user's model written with functions: residual add, F.relu, torch.flatten, a scaling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.inner = nn.Conv2d(4, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.conv(x))
        h = h + 0.5 * F.relu(self.inner(h)) - 0.1
        h = F.max_pool2d(h, 2)
        return self.fc(torch.flatten(h, 1))


def test_functional_code_and_residual_adds_are_bounded() -> None:
    torch.manual_seed(0)
    model = NormalizedModel(_Functional(), (0.5,), (0.25,)).eval()
    lower, upper = box((2, 1, 8, 8), width=0.1)
    bounds = interval_bounds(model, lower, upper)
    points = points_in(lower, upper, 200).flatten(0, 1)
    with torch.no_grad():
        assert_contains(bounds, model(points).view(200, 2, 3))


def test_train_mode_batchnorm_uses_the_recorded_clean_statistics() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                        nn.Linear(3 * 4 * 4, 4))  # fmt: skip
    lower, upper = box((5, 1, 6, 6))
    clean = (lower + upper) / 2
    with pytest.raises(UnsupportedLayerError, match="'1' \\(BatchNorm2d\\) in training mode"):
        interval_bounds(net.train(), lower, upper)
    with recording_batch_stats(net) as stats:
        net(clean)
    train_bounds = interval_bounds(net, lower, upper, batch_stats=stats)
    # The same bounds as the eval-mode net whose running statistics are the clean batch's.
    mean, var = stats["1"]
    net[1].running_mean.copy_(mean.detach())
    net[1].running_var.copy_(var.detach())
    eval_bounds = interval_bounds(net.eval(), lower, upper)
    torch.testing.assert_close(train_bounds.lower, eval_bounds.lower)
    torch.testing.assert_close(train_bounds.upper, eval_bounds.upper)


def test_bounds_are_differentiable_in_the_weights() -> None:
    model = small_cnn()
    lower, upper = box((2, 1, 28, 28), width=0.05)
    margin_lower_bounds(model, lower, upper, torch.tensor([1, 2])).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_an_unsupported_layer_is_refused_in_one_line_naming_it() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.GELU(), nn.Flatten(), nn.Linear(2 * 26 * 26, 10))
    model = NormalizedModel(net, (0.5,), (0.5,)).eval()
    lower, upper = box((1, 1, 28, 28))
    with pytest.raises(UnsupportedLayerError) as error:
        interval_bounds(model, lower, upper)
    message = str(error.value)
    assert "\n" not in message and "'net.1' (GELU)" in message and "supported: Linear" in message


def test_a_product_of_bounded_values_and_untraceable_code_are_refused() -> None:
    class Square(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return (x * x).flatten(1)

    class Branchy(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x.flatten(1) if x.sum() > 0 else -x.flatten(1)

    lower, upper = box((1, 4))
    with pytest.raises(UnsupportedLayerError, match="products with constants"):
        interval_bounds(Square(), lower, upper)
    with pytest.raises(UntraceableModelError, match=r"torch\.fx") as error:
        interval_bounds(Branchy(), lower, upper)
    assert "\n" not in str(error.value)
