"""A trainer's whole state as a checkpoint holds it, and its restoration.

What every worker shares (weights, optimizer, schedule, EMA weights, guard, position, history)
is saved once; what differs between workers (a method's per-sample state, BatchNorm buffers, the
gradient exchange's random state and residuals) is gathered from every worker by
``rank_state``. A restored trainer continues exactly where the saved one stood.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import torch

from advkit.training import rank_state
from advkit.training.epoch_cost import EpochCost
from advkit.training.totals import EpochTotals

if TYPE_CHECKING:
    from advkit.training.trainer import Trainer

CHECKPOINT_FORMAT = "advkit-checkpoint/2"


def capture(trainer: Trainer) -> dict[str, Any]:
    """The checkpoint of ``trainer`` (a collective: every worker calls it; the writer's result
    holds every worker's share, the others' their own)."""
    t = trainer
    ranks = rank_state.gather(t.world, t.method, t.model, t.ema, t.comm)
    rng = {"cpu": torch.get_rng_state()}
    if t.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(t.device)
    return {
        "format": CHECKPOINT_FORMAT,
        "world_size": t.world.size,
        "model": t.model.state_dict(),
        "optimizer": t.optimizer.state_dict(),
        "scheduler": t.scheduler.state_dict(),
        "ranks": ranks,  # every worker's method state, BatchNorm buffers, gradient exchange
        "ema": t.ema.state_dict() if t.ema is not None else None,
        "guard": t.guard.state_dict(),
        "rng": rng,
        "scaler": t.precision.state_dict(),  # fp16's loss scale and growth count; {} otherwise
        "epoch": t.epoch,
        "batch": t.batch,
        "global_step": t.global_step,
        "train_seconds": t.train_seconds,
        "history": json.dumps(t.history),
        **t.best.state_dict(),
        "totals": t.totals.state_dict(),
        "cost": t.cost.state_dict(),
        "epoch_checks": json.dumps(t.epoch_checks),
        "data": json.dumps(t.data_fingerprint),
    }


def restore(trainer: Trainer, state: dict[str, Any]) -> None:
    """Put ``state`` (from :func:`capture`, on any number of workers) back into ``trainer``."""
    t = trainer
    t.model.load_state_dict(state["model"])
    t.optimizer.load_state_dict(state["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    if t.ema is not None and state["ema"] is not None:
        t.ema.load_state_dict(state["ema"])
    # A checkpoint of format 1 (one process, no "ranks") holds the method's state alone.
    ranks = state.get("ranks") or [{"method": state["method"], "buffers": {}, "ema_buffers": {}}]
    rank_state.restore(ranks, t.world, t.method, t.model, t.ema, t.comm)
    t.guard.load_state_dict(state["guard"])
    t.precision.load_state_dict(state.get("scaler") or {})
    t.epoch, t.batch = int(state["epoch"]), int(state["batch"])
    t.global_step = int(state["global_step"])
    t.train_seconds = float(state["train_seconds"])
    t.history = json.loads(state["history"])
    t.best.load_state_dict(state)
    t.totals = EpochTotals.from_state(state["totals"], t.device)
    t.cost = EpochCost.from_state(state.get("cost"))
    t.epoch_checks = json.loads(state.get("epoch_checks", "[]"))
    torch.set_rng_state(state["rng"]["cpu"])
    if "cuda" in state["rng"] and t.device.type == "cuda":
        torch.cuda.set_rng_state(state["rng"]["cuda"], t.device)
