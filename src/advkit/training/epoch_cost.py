"""What an epoch cost: its seconds and its gradient communication (the DAT tables' C and T).

The training loop adds the seconds of its steps and, at each checkpoint and at the epoch's end,
what the gradient synchronization measured since (``Communication.take``); the record gives
``epoch_seconds`` (T: the training steps' wall time), ``comm_seconds`` (C: the sum over
iterations of the span from the first bucket's hook to the last bucket's result, so buckets that
overlap count once), ``compute_seconds`` (T - C), and the bytes per iteration. Numbers are this
worker's (the writer's); kept in the checkpoint, so a resumed epoch counts its first part too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: What ``Communication.take`` returns, summed over the epoch.
COMM_KEYS = ("comm_iterations", "comm_bytes", "comm_wire_bytes", "comm_seconds")


@dataclass
class EpochCost:
    """Seconds and communication totals of the epoch so far."""

    seconds: float = 0.0
    comm: dict[str, float] = field(default_factory=lambda: dict.fromkeys(COMM_KEYS, 0.0))

    def add_comm(self, taken: dict[str, float]) -> None:
        for key in COMM_KEYS:
            self.comm[key] += float(taken.get(key, 0.0))

    def record(self) -> dict[str, float]:
        """The epoch's entries of metrics.jsonl."""
        iterations = max(self.comm["comm_iterations"], 1.0)
        comm_seconds = min(self.comm["comm_seconds"], self.seconds)
        return {
            "epoch_seconds": round(self.seconds, 3),
            "comm_seconds": round(comm_seconds, 3),
            "compute_seconds": round(self.seconds - comm_seconds, 3),
            "comm_bytes_per_iter": round(self.comm["comm_bytes"] / iterations),
            "comm_wire_bytes_per_iter": round(self.comm["comm_wire_bytes"] / iterations),
            "comm_iterations": int(self.comm["comm_iterations"]),
        }

    def state_dict(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "comm": dict(self.comm)}

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> EpochCost:
        if not state:
            return cls()
        cost = cls(seconds=float(state["seconds"]))
        cost.add_comm(state["comm"])
        return cost


def run_totals(history: list[dict[str, Any]]) -> dict[str, float]:
    """The run's sums over its epochs (model.json): seconds, communication, bytes."""
    epochs = [record for record in history if "epoch_seconds" in record]
    iterations = sum(r["comm_iterations"] for r in epochs)
    total = {
        key: round(sum(r[key] for r in epochs), 3)
        for key in ("epoch_seconds", "comm_seconds", "compute_seconds")
    }
    sent = sum(r["comm_bytes_per_iter"] * r["comm_iterations"] for r in epochs)
    wire = sum(r["comm_wire_bytes_per_iter"] * r["comm_iterations"] for r in epochs)
    return total | {
        "comm_iterations": iterations,
        "comm_bytes": sent,
        "comm_wire_bytes": wire,
        "comm_bytes_per_iter": round(sent / iterations) if iterations else 0,
        "comm_wire_bytes_per_iter": round(wire / iterations) if iterations else 0,
    }
