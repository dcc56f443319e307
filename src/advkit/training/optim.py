"""Optimizer construction: SGD (momentum, optional Nesterov), Adam, or DAT's layer-wise adaptive
LALR; no weight decay on BatchNorm and bias parameters; the peak LR scaled to the batch size."""

from __future__ import annotations

import math
from typing import Any

from torch import nn
from torch.optim import SGD, Adam, Optimizer

from advkit.training.lalr import DEFAULT_CLIP, LALR

#: How the peak LR follows the global batch B: lr * (B / base_batch_size) ** power.
LR_SCALING = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}


def scaled_lr(config: Any) -> float:
    """``config.lr`` scaled to ``config.batch_size`` by ``config.lr_scaling`` (linear: Goyal et
    al. 2017; sqrt: Krizhevsky 2014, You et al.'s LAMB) relative to ``config.base_batch_size``."""
    power = LR_SCALING[config.lr_scaling]
    return config.lr * math.pow(config.batch_size / config.base_batch_size, power)


def build_optimizer(model: nn.Module, config: Any) -> Optimizer:
    """``config.optimizer`` ("sgd", "adam" or "lalr") over the model's parameters at the scaled
    LR; normalization and bias parameters get no weight decay (and, under LALR with
    ``lalr_exclude_1d``, no layer-wise adaptation either)."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if not parameter.requires_grad:
            continue
        (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    groups: list[dict[str, Any]] = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    lr = scaled_lr(config)
    if config.optimizer == "lalr":
        groups[1]["adapt"] = not config.lalr_exclude_1d
        return LALR(
            [g for g in groups if g["params"]], lr=lr, base=config.lalr_base or "adam",
            momentum=config.momentum, clip=tuple(config.lalr_clip or DEFAULT_CLIP),
        )  # fmt: skip
    groups = [g for g in groups if g["params"]]
    if config.optimizer == "adam":
        # Wong et al.'s MNIST recipe: Adam with a cyclic LR peaking at 5e-3.
        return Adam(groups, lr=lr)
    return SGD(groups, lr=lr, momentum=config.momentum,
               nesterov=config.nesterov and config.momentum > 0)  # fmt: skip
