"""Learning-rate schedules as multipliers of the peak LR, stepped once per weight update.

Each schedule is a function ``factor(progress) -> float`` of training progress in [0, 1]; a linear
warm-up over the first updates multiplies any of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from advkit.registry import Registry

Schedule = Callable[[float], float]
SCHEDULES: Registry[Schedule] = Registry("schedule")


@SCHEDULES.register("cyclic", help="one-cycle: linear 0 -> lr over 40% of updates, then -> 0")
def cyclic(progress: float) -> float:
    """The triangular one-cycle schedule of Wong et al. (ICLR 2020) for fast training."""
    peak = 0.4
    return progress / peak if progress < peak else max(0.0, (1 - progress) / (1 - peak))


@SCHEDULES.register("piecewise", help="lr, then x0.1 at 50% and x0.01 at 75% of updates")
def piecewise(progress: float) -> float:
    """Madry et al.'s step decay."""
    return 1.0 if progress < 0.5 else 0.1 if progress < 0.75 else 0.01


@SCHEDULES.register("cosine", help="cosine decay from lr to 0")
def cosine(progress: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@SCHEDULES.register("constant", help="lr throughout")
def constant(progress: float) -> float:
    del progress
    return 1.0


def build_scheduler(
    optimizer: Optimizer, name: str, total_updates: int, warmup_updates: int = 0
) -> LambdaLR:
    """A LambdaLR over ``total_updates`` steps; ``warmup_updates`` ramps linearly from ~0."""
    schedule = SCHEDULES.get(name)
    total = max(1, total_updates)

    def factor(update: int) -> float:
        value = schedule(min(update, total) / total)
        if warmup_updates > 0 and update < warmup_updates:
            value *= (update + 1) / warmup_updates
        return value

    return LambdaLR(optimizer, factor)
