"""How a training run can end, besides a Python error: a result, a stop on request, a model that
cannot train."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from advkit.errors import UserError


class TrainingInterrupted(RuntimeError):
    """Raised after a stop request (SIGINT/SIGTERM) once the state is safely checkpointed."""

    def __init__(self, run_dir: Path | None) -> None:
        where = f"; resume with: advkit train --resume {run_dir}" if run_dir else ""
        super().__init__(f"training interrupted, checkpoint saved{where}")
        self.run_dir = run_dir


class NoGradientError(UserError, RuntimeError):
    """A model whose loss has no gradient with respect to its weights: it cannot train."""


@dataclass
class TrainResult:
    """What a finished run produced."""

    model: nn.Module
    history: list[dict[str, Any]]
    run_dir: Path | None
    metadata: dict[str, Any]
    selected_epoch: int
