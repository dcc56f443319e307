"""Accuracy on a held-out split, clean and under PGD, used for model selection each epoch."""

from __future__ import annotations

import torch
from torch import nn

from advkit.attacks import pgd
from advkit.data import TensorData, iterate_batches


def robust_accuracy(
    model: nn.Module,
    data: TensorData,
    *,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    batch_size: int = 256,
) -> tuple[float, float]:
    """(clean accuracy, accuracy under PGD-``steps`` with step 2.5 * eps / steps), model in eval."""
    correct = torch.zeros((), dtype=torch.long, device=data.images.device)
    robust = torch.zeros_like(correct)
    was_training = model.training
    model.eval()
    try:
        for inputs, labels in iterate_batches(data, batch_size):
            with torch.no_grad():
                correct += (model(inputs).argmax(1) == labels).sum()
            if eps > 0:
                adv_inputs = pgd(model, inputs, labels, eps=eps, norm=norm, steps=steps)
                with torch.no_grad():
                    robust += (model(adv_inputs).argmax(1) == labels).sum()
    finally:
        model.train(was_training)
    n = max(len(data), 1)
    clean_acc = correct.item() / n
    return clean_acc, (robust.item() / n if eps > 0 else clean_acc)
