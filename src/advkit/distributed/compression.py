"""TEMPORARY STUB (replaced by the helper's module at merge)."""

from __future__ import annotations

from typing import Any

from torch import nn

COMPRESSIONS = ("none", "fp16", "bf16", "int8", "int8-2sided", "powersgd")


class Communication:
    def take(self) -> dict[str, float]:
        return {
            "comm_iterations": 0.0,
            "comm_bytes": 0.0,
            "comm_wire_bytes": 0.0,
            "comm_seconds": 0.0,
        }

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def attach_communication(model: nn.Module, compression: str = "none", **_: Any) -> Communication:
    return Communication()
