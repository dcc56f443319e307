"""Model selection: keep the weights of the epoch with the best validation metric."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import Tensor, nn

from advkit.training.run_writer import RunWriter


class BestModel:
    """Tracks the best epoch by validation PGD accuracy (clean accuracy for natural training).

    The writer keeps the weights on disk (checkpoints/best.safetensors); every other worker, and
    a run without a folder, keeps them in memory, so each worker can hand back the selected model.
    """

    def __init__(self, writer: RunWriter, adversarial: bool) -> None:
        self.writer = writer
        self.key = "val_pgd" if adversarial else "val_clean"
        self.metric = -math.inf
        self.epoch = 0
        self._weights: dict[str, Tensor] | None = None

    def offer(self, record: dict[str, Any], epoch: int, model: nn.Module) -> bool:
        """Keep ``model`` if this epoch's record beats the best and did not collapse."""
        metric = record.get(self.key, -math.inf)
        if metric <= self.metric or record.get("co_collapsed", False):
            return False
        self.metric, self.epoch = metric, epoch
        if self.writer.enabled:
            self.writer.best(model.state_dict(), epoch, metric)
        else:
            self._weights = copy.deepcopy(model.state_dict())
        return True

    def weights(self, device: torch.device) -> dict[str, Tensor] | None:
        """The best epoch's weights: kept in memory, else read from the run folder (after a
        resume); None when neither has them (a worker that cannot see the writer's folder)."""
        if self._weights is not None:
            return self._weights
        if self.writer.best_path is not None and self.writer.best_path.is_file():
            return self.writer.load_best(device)
        return None

    def state_dict(self) -> dict[str, Any]:
        return {"best_metric": self.metric, "best_epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.metric, self.epoch = float(state["best_metric"]), int(state["best_epoch"])
