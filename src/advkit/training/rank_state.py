"""State that differs between workers, and how a checkpoint carries it.

Weights and optimizer state are the same on every worker (DDP keeps them so); what differs is
each worker's share of the global batch: a method's persistent perturbation (Free-AT's delta of
its slice), BatchNorm's running statistics over its shard, and its side of the gradient exchange
(stochastic rounding's random state, error-feedback residuals). The writer gathers every
worker's share into the checkpoint; on resume each worker takes its own back. Resumed on
another number of workers, per-sample tensors (sliced along the batch) are joined and sliced
anew, which is exact, BatchNorm statistics are averaged, which is not, and the gradient
exchange starts afresh (a warning says so).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

from advkit.distributed import World

log = logging.getLogger("advkit.train")


def floating_buffers(module: nn.Module | None) -> dict[str, Tensor]:
    if module is None:
        return {}
    return {name: b.detach().clone() for name, b in module.named_buffers() if b.is_floating_point()}


def local_state(
    method: Any, model: nn.Module, ema: nn.Module | None, comm: Any = None
) -> dict[str, Any]:
    """This worker's own share of the training state."""
    return {
        "method": method.state_dict(),
        "buffers": floating_buffers(model),
        "ema_buffers": floating_buffers(ema),
        "comm": comm.state_dict() if comm is not None else {},
    }


def gather(
    world: World, method: Any, model: nn.Module, ema: nn.Module | None, comm: Any = None
) -> list | None:
    """Every worker's share, on the writer (rank order); None elsewhere."""
    state = local_state(method, model, ema, comm)
    if world.size > 1:  # tensors travel between processes on the CPU
        state = _to_cpu(state)
    return world.gather_objects(state)


def restore(
    states: list[dict[str, Any]], world: World, method: Any, model: nn.Module,
    ema: nn.Module | None, comm: Any = None,
) -> None:  # fmt: skip
    """Load this worker's share from ``states`` (saved by ``gather`` on any number of workers)."""
    if len(states) == world.size:
        own = states[world.rank]
    else:
        log.warning(
            "resuming a run of %d workers on %d: per-sample state is re-split exactly, "
            "BatchNorm running statistics are averaged over the old workers, the gradient "
            "exchange's residuals start from zero", len(states),
            world.size,
        )  # fmt: skip
        own = {
            "method": _reshard(states, "method", world),
            "buffers": _average([s["buffers"] for s in states]),
            "ema_buffers": _average([s["ema_buffers"] for s in states]),
        }
    if comm is not None and own.get("comm"):
        comm.load_state_dict(own["comm"])
    method.load_state_dict(own["method"])
    _load_buffers(model, own["buffers"])
    if ema is not None:
        _load_buffers(ema, own["ema_buffers"])


def _reshard(states: list[dict[str, Any]], key: str, world: World) -> dict[str, Any]:
    """Per-sample tensors of every old worker joined along the batch, then this worker's slice."""
    merged = dict(states[0][key])
    for name, value in merged.items():
        if isinstance(value, Tensor) and value.dim() > 0:
            whole = torch.cat([s[key][name] for s in states])
            merged[name] = whole[world.shard(len(whole))].clone()
    return merged


def _average(buffers: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    return {name: torch.stack([b[name] for b in buffers]).mean(0) for name in buffers[0]}


def _load_buffers(module: nn.Module, values: dict[str, Tensor]) -> None:
    own = dict(module.named_buffers())
    with torch.no_grad():
        for name, value in values.items():
            own[name].copy_(value)


def _to_cpu(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, dict):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_to_cpu(v) for v in value)
    return value
