"""Guard against catastrophic overfitting of single-step adversarial training.

FGSM-based training can lose its robustness within an epoch (Wong et al. 2020; Andriushchenko &
Flammarion 2020): PGD accuracy collapses while FGSM accuracy soars, even above clean accuracy,
because the model became locally so non-linear that the one-step attack no longer finds the
worst case. The guard measures both on a fixed held-out batch and says when that happened.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from torch import nn

from advkit.attacks import fgsm, pgd
from advkit.data import TensorData
from advkit.distributed import World
from advkit.training.validation import accuracies

log = logging.getLogger("advkit.train")

# A relative drop from a tiny best (0.5% -> 0.2% early in training) is noise on a 512-image batch,
# not a collapse: the drop must also exceed this many accuracy points (a few binomial std errors).
MIN_ABSOLUTE_DROP = 0.05


@dataclass
class GuardVerdict:
    clean: float
    fgsm: float
    pgd: float
    collapsed: bool
    reason: str = ""

    def as_metrics(self) -> dict[str, Any]:
        return {"co_clean": self.clean, "co_fgsm": self.fgsm, "co_pgd": self.pgd,
                "co_collapsed": self.collapsed}  # fmt: skip


class CatastrophicOverfittingGuard:
    """Checks clean, FGSM and PGD accuracy on the first ``examples`` validation images.

    Collapse: PGD accuracy below ``1 - max_drop`` times its best so far (relative, so that a
    model that collapses early, from 20% to 3%, is caught as surely as one that falls from 80% to
    10%; and by at least ``MIN_ABSOLUTE_DROP``), or FGSM accuracy above clean accuracy.

    ``mode``: "off", "warn" (log only), "rollback" (restore the last good weights and shrink the
    attack step by ``step_factor``; a collapse after ``max_rollbacks`` of them stops training) or
    "stop" (end training; the best checkpoint is kept as the final model).
    """

    def __init__(
        self, mode: str = "off", max_drop: float = 0.2, step_factor: float = 0.5,
        examples: int = 512, pgd_steps: int = 10, max_rollbacks: int = 3,
    ) -> None:  # fmt: skip
        self.mode = mode
        self.max_drop = max_drop
        self.step_factor = step_factor
        self.max_rollbacks = max_rollbacks
        self.examples = examples
        self.pgd_steps = pgd_steps
        self.best_pgd = -math.inf
        self.collapses = 0
        self.stopped = False
        self.snapshot: dict[str, Any] | None = None

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def check(
        self, model: nn.Module, data: TensorData, eps: float, norm: str, world: World | None = None
    ) -> GuardVerdict:
        """Measure the first ``examples`` images of ``data`` (sharded over ``world``'s workers)
        and judge them against the best PGD accuracy so far."""
        data = data.take(torch.arange(min(self.examples, len(data))))
        attacks = {
            "fgsm": partial(fgsm, eps=eps, norm=norm),
            "pgd": partial(pgd, eps=eps, norm=norm, steps=self.pgd_steps),
        }
        measured = accuracies(model, data, attacks, world=world)
        clean, fgsm_acc, pgd_acc = measured["clean"], measured["fgsm"], measured["pgd"]
        reasons = []
        drop = self.best_pgd - pgd_acc
        if drop > self.max_drop * self.best_pgd and drop > MIN_ABSOLUTE_DROP:
            reasons.append(
                f"PGD accuracy fell to {pgd_acc:.1%} from its best {self.best_pgd:.1%} "
                f"(more than {self.max_drop:.0%} of it)"
            )
        if fgsm_acc > clean:
            reasons.append(f"FGSM accuracy {fgsm_acc:.1%} is above clean accuracy {clean:.1%}")
        collapsed = bool(reasons)
        if collapsed:
            self.collapses += 1
        else:
            self.best_pgd = max(self.best_pgd, pgd_acc)
        return GuardVerdict(clean, fgsm_acc, pgd_acc, collapsed, "; ".join(reasons))

    def state_dict(self) -> dict[str, Any]:
        return {"best_pgd": self.best_pgd, "collapses": self.collapses, "stopped": self.stopped,
                "snapshot": self.snapshot}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best_pgd = float(state["best_pgd"])
        self.collapses = int(state["collapses"])
        self.stopped = bool(state["stopped"])
        self.snapshot = state.get("snapshot")


class GuardKeeper:
    """Runs the guard's checks during training and carries out its verdict on the run's parts.

    ``rollback`` restores the last good weights, optimizer and EMA (taken at each passing check)
    and shrinks the method's attack step; a collapse after ``max_rollbacks`` rollbacks, or any
    collapse in mode ``stop``, stops training (the best checkpoint becomes the final model).
    """

    def __init__(
        self, guard: CatastrophicOverfittingGuard, *, model: nn.Module, optimizer: Any,
        ema: nn.Module | None, method: Any, world: World,
    ) -> None:  # fmt: skip
        self.guard = guard
        self.model, self.optimizer, self.ema, self.method = model, optimizer, ema, method
        self.world = world
        self._last_verdict: dict[str, Any] = {}
        self._checked_step = -1

    def check(
        self, eval_model: nn.Module, data: TensorData, eps: float, norm: str, step: int
    ) -> dict[str, Any]:
        """Check the weights at global ``step`` (once per step) and apply the verdict; returns
        the check's metrics (empty when the guard is off)."""
        guard = self.guard
        if not guard.enabled or len(data) == 0:
            return {}
        if guard.stopped or self._checked_step == step:
            return self._last_verdict  # stopped mid-epoch, or these weights were just checked
        self._checked_step = step
        verdict = guard.check(eval_model, data, eps, norm, world=self.world)
        if verdict.collapsed:
            log.warning("catastrophic overfitting at step %d: %s", step, verdict.reason)
            rollback = guard.mode == "rollback" and guard.snapshot is not None
            if rollback and guard.collapses > guard.max_rollbacks:
                log.warning(
                    "collapsed again after %d rollbacks: stopping; the best checkpoint is the "
                    "final model", guard.max_rollbacks,
                )  # fmt: skip
                guard.stopped = True
            elif rollback:
                self._restore(guard.snapshot)
                self.method.scale_step_size(guard.step_factor)
                log.warning(
                    "rolled back to the last good weights; attack step x%g", self.method.step_scale
                )
            elif guard.mode == "stop":
                guard.stopped = True
        elif guard.mode == "rollback":
            guard.snapshot = self._snapshot()
        self._last_verdict = verdict.as_metrics()
        return self._last_verdict

    def _snapshot(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return copy.deepcopy(state)

    def _restore(self, snapshot: dict[str, Any]) -> None:
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(snapshot["ema"])
