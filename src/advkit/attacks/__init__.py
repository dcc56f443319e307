"""Attacks: plain functions ``attack(model, inputs, labels, *, eps, ...) -> adv_inputs``.

Inputs are in [0, 1]; budgets are in pixel units; gradients are taken with respect to the input
only; each attack sets the model's mode for its duration and restores it.
"""

from advkit.attacks._mode import attack_mode
from advkit.attacks.losses import LOSSES
from advkit.attacks.pgd import fgsm, pgd, pgd_delta

__all__ = ["LOSSES", "attack_mode", "fgsm", "pgd", "pgd_delta"]
