"""Measurements the analyses share: batched logits, seeded PGD, figures without pyplot.

Every random draw is seeded from the analysis context, so the same seed gives the same numbers,
and two models attacked with the same ``seed`` get the same random starts (a difference between
them is the models', not the noise's). The caller's global RNG is left as it was.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from advkit.attacks import pgd

if TYPE_CHECKING:
    pass

#: Images per forward pass or attack batch.
BATCH_SIZE = 256


def logits_of(model: nn.Module, inputs: Tensor, batch_size: int = BATCH_SIZE) -> Tensor:
    """The model's logits for ``inputs`` (N, C, H, W), in float32, batch by batch, no graph."""
    with torch.no_grad():
        parts = [
            model(inputs[i : i + batch_size]).float() for i in range(0, len(inputs), batch_size)
        ]
    return torch.cat(parts) if parts else inputs.new_zeros(0, 0)


def pgd_inputs(
    model: nn.Module, inputs: Tensor, labels: Tensor, *, eps: float, norm: str, steps: int,
    seed: int, batch_size: int = BATCH_SIZE,
) -> Tensor:  # fmt: skip
    """PGD-``steps`` adversarial inputs (random start, step 2.5 * eps / steps), the random
    starts drawn from a fork of the RNG seeded by ``seed`` (and the batch's index)."""
    if eps <= 0 or steps < 1:
        return inputs
    devices = [inputs.device] if inputs.device.type == "cuda" else []
    parts = []
    with torch.random.fork_rng(devices=devices):
        for b, start in enumerate(range(0, len(inputs), batch_size)):
            torch.manual_seed(seed * 1_000_003 + b)
            part = slice(start, start + batch_size)
            parts.append(pgd(model, inputs[part], labels[part], eps=eps, norm=norm, steps=steps))
    return torch.cat(parts) if parts else inputs


def attack_name(eps: float, norm: str, steps: int) -> str:
    """How a report names the attack of :func:`pgd_inputs`, e.g. "PGD-10 (linf, eps 0.1)"."""
    from advkit.humanize import format_eps

    if eps <= 0 or steps < 1:
        return "none (clean inputs)"
    return f"PGD-{steps} ({norm}, eps {format_eps(eps)}, step 2.5*eps/{steps}, random start)"


def fraction(value: float | None, digits: int = 4) -> float | None:
    """A fraction or cosine rounded to what it means (1e-4 on a few thousand points)."""
    return None if value is None else round(float(value), digits)
