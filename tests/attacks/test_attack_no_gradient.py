"""A model whose output has no autograd path to its input (forward under ``torch.no_grad()``, or
a detached input) gives the attacks a zero gradient: the gradient attacks run and stay where
their start puts them, the black-box Square attack still breaks what it can."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from advkit.attacks import apgd, apgd_targeted, fgsm, pgd, square
from advkit.attacks.gradients import (
    NoInputGradientError,
    input_gradient,
    input_gradient_or_none,
    require_input_gradient,
)

EPS = {"linf": 0.1, "l2": 1.0}


class NoGradForward(nn.Module):
    """A linear classifier whose forward runs under ``torch.no_grad()``."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(64, 5)

    def forward(self, x: Tensor) -> Tensor:
        with torch.no_grad():
            return self.fc(x.flatten(1))


class DetachedInput(NoGradForward):
    """The same classifier on a detached input: its parameters still have a graph."""

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x.detach().flatten(1))


MODELS = [NoGradForward, DetachedInput]


def problem(model: nn.Module) -> tuple[Tensor, Tensor]:
    torch.manual_seed(1)
    inputs = torch.rand(12, 1, 8, 8)
    with torch.no_grad():
        labels = model(inputs).argmax(1)
    return inputs, labels


@pytest.mark.parametrize("model_class", MODELS)
@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize(
    "attack",
    [
        lambda m, x, y, eps, norm: pgd(m, x, y, eps=eps, norm=norm, steps=3, restarts=2),
        lambda m, x, y, eps, norm: fgsm(m, x, y, eps=eps, norm=norm),
        lambda m, x, y, eps, norm: apgd(m, x, y, eps=eps, norm=norm, steps=4, restarts=2),
        lambda m, x, y, eps, norm: apgd(m, x, y, eps=eps, norm=norm, steps=4, loss="dlr"),
        lambda m, x, y, eps, norm: apgd_targeted(m, x, y, eps=eps, norm=norm, steps=4,
                                                 num_target_classes=2),
        lambda m, x, y, eps, norm: square(m, x, y, eps=eps, norm=norm, queries=20, seed=0),
    ],
    ids=["pgd", "fgsm", "apgd-ce", "apgd-dlr", "apgd-t", "square"],
)  # fmt: skip
def test_every_attack_runs_and_stays_in_the_ball(model_class, norm, attack):
    model = model_class().eval()
    inputs, labels = problem(model)
    adversarial = attack(model, inputs, labels, EPS[norm], norm)
    assert adversarial.shape == inputs.shape and torch.isfinite(adversarial).all()
    assert float(adversarial.min()) >= 0 and float(adversarial.max()) <= 1
    distance = (adversarial - inputs).flatten(1)
    size = distance.abs().amax(1) if norm == "linf" else distance.norm(dim=1)
    assert float(size.max()) <= EPS[norm] * (1 + 1e-5)


@pytest.mark.parametrize("model_class", MODELS)
def test_gradient_attacks_see_a_zero_gradient(model_class):
    """From the clean point, a zero gradient moves nothing: PGD without a random start returns
    the inputs themselves."""
    model = model_class().eval()
    inputs, labels = problem(model)
    adversarial = pgd(model, inputs, labels, eps=0.1, steps=5, random_start=False)
    assert torch.equal(adversarial, inputs)


@pytest.mark.parametrize("model_class", MODELS)
def test_square_still_breaks_the_model(model_class):
    model = model_class().eval()
    inputs, labels = problem(model)
    adversarial = square(model, inputs, labels, eps=0.3, queries=100, seed=0)
    with torch.no_grad():
        broken = model(adversarial).argmax(1).ne(labels).sum()
    assert int(broken) >= 6


@pytest.mark.parametrize("model_class", MODELS)
def test_the_gradient_helpers_tell_no_graph_from_a_zero_gradient(model_class):
    model = model_class()
    inputs = torch.rand(3, 1, 8, 8, requires_grad=True)
    loss = model(inputs).sum()
    assert input_gradient_or_none(loss, inputs) is None
    assert torch.equal(input_gradient(model(inputs).sum(), inputs), torch.zeros_like(inputs))
    with pytest.raises(NoInputGradientError, match=r"GradAlign needs .* torch\.no_grad"):
        require_input_gradient(model(inputs).sum(), inputs, purpose="GradAlign")
    flat = (0 * inputs).sum()  # a graph whose gradient is exactly zero: not "no graph"
    assert torch.equal(input_gradient_or_none(flat, inputs), torch.zeros_like(inputs))
