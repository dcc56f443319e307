"""A model loaded from its exported graph refuses to train instead of ignoring ``train()``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from advkit.attacks import attack_mode, pgd
from advkit.errors import UserError
from advkit.models.exported import FrozenModelError, export_model, load_exported


def _loaded(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(18, 3))
    assert export_model(net, (1, 5, 5), tmp_path / "model.pt2") is None
    return load_exported(tmp_path / "model.pt2")


def test_train_is_refused_with_what_to_do_and_eval_mode_is_harmless(tmp_path):
    model = _loaded(tmp_path)
    assert model.eval() is model and model.train(False) is model and not model.training
    with pytest.raises(FrozenModelError, match="frozen in eval mode") as caught:
        model.train()
    assert isinstance(caught.value, UserError) and "model.safetensors" in str(caught.value)
    assert not model.training


def test_attacks_still_run_on_it_in_eval_mode(tmp_path):
    model = _loaded(tmp_path)
    inputs, labels = torch.rand(4, 1, 5, 5), torch.tensor([0, 1, 2, 0])
    with attack_mode(model):
        adv = pgd(model, inputs, labels, eps=0.1, steps=2)
    assert (adv - inputs).abs().max() <= 0.1 + 1e-6 and not model.training
