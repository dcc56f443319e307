"""Attacks: plain functions ``attack(model, inputs, labels, *, eps, ...) -> adv_inputs``.

Inputs are in [0, 1]; budgets are in pixel units; gradients are taken with respect to the input
only; each attack sets the model's mode for its duration and restores it.
"""

from advkit.attacks._mode import attack_mode
from advkit.attacks.apgd import apgd, apgd_targeted
from advkit.attacks.autoattack import AttackStage, CascadeResult, cascade, standard_stages
from advkit.attacks.losses import LOSSES
from advkit.attacks.pgd import fgsm, pgd, pgd_delta
from advkit.attacks.square import square

__all__ = [
    "LOSSES",
    "AttackStage",
    "CascadeResult",
    "apgd",
    "apgd_targeted",
    "attack_mode",
    "cascade",
    "fgsm",
    "pgd",
    "pgd_delta",
    "square",
    "standard_stages",
]
