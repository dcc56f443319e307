"""Running sums of one epoch's training metrics, summed over the workers at the epoch's end."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from advkit.distributed import World


@dataclass
class EpochTotals:
    """Sums of loss, correct predictions and extra metrics, each weighted by its batch size.

    Kept as tensors on the device, so the hot loop never synchronizes with the host; ``reduce``
    sums them over the workers once, giving the numbers one process on the global batch gets.
    """

    loss: Tensor
    correct: Tensor
    seen: int = 0
    extra: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def zeros(cls, device: torch.device) -> EpochTotals:
        zero = torch.zeros((), dtype=torch.float64, device=device)
        return cls(loss=zero.clone(), correct=zero.clone())

    def add(self, loss: Tensor, logits: Tensor, labels: Tensor, extra: dict[str, Tensor]) -> None:
        n = len(labels)
        self.loss += loss.detach().double() * n
        self.correct += (logits.argmax(dim=1) == labels).sum()
        self.seen += n
        for name, value in extra.items():
            if name not in self.extra:
                self.extra[name] = torch.zeros((), dtype=torch.float64, device=self.loss.device)
            self.extra[name] += value.detach().double() * n

    def reduce(self, world: World) -> dict[str, float]:
        """Means over every worker's samples: train_loss, train_acc, train_<extra>."""
        names = sorted(self.extra)
        seen = torch.tensor(float(self.seen), dtype=torch.float64, device=self.loss.device)
        sums = torch.stack([self.loss, self.correct, seen, *(self.extra[k] for k in names)])
        loss, correct, count, *extra = world.all_reduce_sum(sums).tolist()
        count = max(count, 1.0)
        means = {"train_loss": loss / count, "train_acc": correct / count}
        return means | {f"train_{k}": v / count for k, v in zip(names, extra, strict=True)}

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "correct": self.correct, "seen": self.seen, "extra": self.extra}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> EpochTotals:
        return cls(
            loss=state["loss"].to(device), correct=state["correct"].to(device),
            seen=int(state["seen"]), extra={k: v.to(device) for k, v in state["extra"].items()},
        )  # fmt: skip
