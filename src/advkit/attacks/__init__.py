"""Attacks: plain functions ``attack(model, inputs, labels, *, eps, ...) -> adv_inputs``.

Inputs are in [0, 1]; budgets are in pixel units; gradients are taken with respect to the input
only; each attack sets the model's mode for its duration and restores it. ``ATTACKS`` lists the
public attacks by name; each one checks its inputs, labels and budgets once per call.
"""

from advkit.attacks._entry import ATTACKS, public_attack
from advkit.attacks._mode import attack_mode
from advkit.attacks.apgd import apgd, apgd_targeted
from advkit.attacks.autoattack import AttackStage, CascadeResult, cascade, standard_stages
from advkit.attacks.losses import LOSSES
from advkit.attacks.pgd import fgsm, pgd, pgd_delta
from advkit.attacks.smoothing import smoothed_pgd
from advkit.attacks.square import square

__all__ = [
    "ATTACKS",
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
    "public_attack",
    "smoothed_pgd",
    "square",
    "standard_stages",
]
