"""Optimizer construction: SGD (momentum, optional Nesterov) or Adam; no decay on BN and biases."""

from __future__ import annotations

from typing import Any

from torch import nn
from torch.optim import SGD, Adam, Optimizer


def build_optimizer(model: nn.Module, config: Any) -> Optimizer:
    """``config.optimizer`` ("sgd" or "adam") over the model's parameters; normalization and bias
    parameters get no weight decay."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    groups = [g for g in groups if g["params"]]
    if config.optimizer == "adam":
        # Wong et al.'s MNIST recipe: Adam with a cyclic LR peaking at 5e-3.
        return Adam(groups, lr=config.lr)
    return SGD(
        groups,
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
    )
