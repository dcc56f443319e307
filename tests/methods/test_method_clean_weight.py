"""DAT's objective: pgd and fast add clean_weight * loss(clean) to the adversarial loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from advkit.config import ConfigError, TrainConfig
from advkit.methods import METHODS, StepContext


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 5))


@pytest.mark.parametrize("name", ["pgd", "fast"])
@pytest.mark.parametrize("weight", [0.0, 0.5, 1.0])
def test_the_clean_term_enters_the_one_loss_that_updates_the_weights(name, weight):
    """At eps 0 the adversarial input is the clean one: the loss is (1 + weight) x CE(clean);
    above 0 the two terms differ and each is the loss of its own input."""
    model = _model()
    inputs = torch.rand(8, 1, 4, 4)
    labels = torch.randint(0, 5, (8,))
    seen: list[Tensor] = []
    method = METHODS.get(name)(clean_weight=weight, **({"steps": 1} if name == "pgd" else {}))
    ctx = StepContext(model=model, attack_model=model, optimize=seen.append, eps=0.0)
    out = method.step(inputs, labels, ctx)
    clean = F.cross_entropy(model(inputs), labels)
    (loss,) = seen  # one backward
    torch.testing.assert_close(loss, (1 + weight) * clean)
    assert ("clean_loss" in out.metrics) == (weight > 0)
    if weight:
        torch.testing.assert_close(out.metrics["clean_loss"], clean.detach())

    ctx = StepContext(model=model, attack_model=model, optimize=seen.append, eps=0.3)
    out = method.step(inputs, labels, ctx)
    adversarial = F.cross_entropy(out.logits, labels)
    torch.testing.assert_close(seen[-1], adversarial + weight * clean)
    assert adversarial > clean


@pytest.mark.parametrize("name", ["natural", "free", "trades", "gradalign"])
def test_methods_without_a_clean_term_refuse_the_option(name):
    with pytest.raises(ConfigError, match=f"--clean-weight .* method {name} does not take it"):
        METHODS.get(name).from_config(TrainConfig(method=name, clean_weight=1.0))
    METHODS.get(name).from_config(TrainConfig(method=name))  # 0 is no request


def test_a_negative_clean_weight_is_refused():
    with pytest.raises(ConfigError, match="clean_weight must be a finite number >= 0"):
        TrainConfig(clean_weight=-1).validate()
