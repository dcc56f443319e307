"""Per-sample attack objectives, all to be *maximized*, computed in float32.

Each loss takes ``(logits, labels)`` and returns a tensor of shape (N,). For a targeted attack the
attack passes the target labels and maximizes the negated loss, which for CE and the CW margin is
exactly the targeted objective.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor

from advkit.registry import Registry

LossFn = Callable[[Tensor, Tensor], Tensor]
LOSSES: Registry[LossFn] = Registry("attack loss")


@LOSSES.register("ce")
def cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Cross-entropy of the true class (Goodfellow et al.; Madry et al.)."""
    return F.cross_entropy(logits.float(), labels, reduction="none")


def _true_and_best_other(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    logits = logits.float()
    true = logits.gather(1, labels[:, None]).squeeze(1)
    others = logits.scatter(1, labels[:, None], float("-inf"))
    return true, others.amax(dim=1)


@LOSSES.register("cw")
def cw_margin(logits: Tensor, labels: Tensor) -> Tensor:
    """Carlini & Wagner margin: best other logit minus the true logit.

    Carlini & Wagner, S&P 2017 (arXiv:1608.04644).
    """
    true, best_other = _true_and_best_other(logits, labels)
    return best_other - true


@LOSSES.register("dlr")
def dlr(logits: Tensor, labels: Tensor) -> Tensor:
    """Difference of Logits Ratio (Croce & Hein, ICML 2020, arXiv:2003.01690): shift and scale
    invariant margin, -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3)."""
    logits = logits.float()
    true, best_other = _true_and_best_other(logits, labels)
    top = logits.topk(3, dim=1).values
    return (best_other - true) / (top[:, 0] - top[:, 2] + 1e-12)


def targeted_dlr(logits: Tensor, labels: Tensor, target_labels: Tensor) -> Tensor:
    """Targeted DLR of Croce & Hein: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), maximized."""
    logits = logits.float()
    true = logits.gather(1, labels[:, None]).squeeze(1)
    target = logits.gather(1, target_labels[:, None]).squeeze(1)
    top = logits.topk(4, dim=1).values
    return -(true - target) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12)


def kl_to_clean(logits: Tensor, clean_log_probs: Tensor) -> Tensor:
    """KL(p_clean || p_adv) per sample: the inner objective of TRADES (Zhang et al., ICML 2019)."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    return (clean_log_probs.exp() * (clean_log_probs - log_probs)).sum(dim=1)
