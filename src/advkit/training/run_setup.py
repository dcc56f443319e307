"""What a run is before its loop starts: the config as the run folder records it, what a resume
may change of it, the run-folder lock, and the model's BatchNorm layers across workers."""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advkit import runs
from advkit.config import ConfigError, TrainConfig, load_config
from advkit.config_resume import resume_changes
from advkit.data import DataSplits, StreamingSplits
from advkit.distributed import World
from advkit.runlock import hold_run


def sync_batchnorm(model: nn.Module, device: torch.device, world: World) -> nn.Module:
    """BatchNorm layers that normalize over the global batch (torch's SyncBatchNorm, CUDA only)."""
    if device.type != "cuda":
        raise ConfigError(
            "--sync-bn needs CUDA workers (torch's SyncBatchNorm has no CPU kernel); on CPU drop "
            "it: BatchNorm then uses each worker's shard, and its running statistics are averaged "
            "over the workers for validation and saving"
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(model) if world.size > 1 else model


def holding(run_dir: str | Path | None) -> AbstractContextManager[None]:
    """The run-folder lock of training (``hold_run`` is a no-op on workers other than rank 0)."""
    return nullcontext() if run_dir is None else hold_run(run_dir, "training")


def as_used(config: TrainConfig, data: DataSplits | StreamingSplits | None) -> TrainConfig:
    """``config`` as the run folder records it: with given ``data``, its dataset and no data_dir."""
    if data is None:
        return config
    return dataclasses.replace(config, dataset=data.dataset, data_dir=None)


def changes_on_resume(run_dir: Path, config: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """What ``config`` changes of the run in ``run_dir``; ConfigError for what may not change."""
    saved = run_dir / runs.CONFIG_FILE
    if not saved.is_file():
        raise runs.RunError(f"{run_dir} is not a run folder (no {runs.CONFIG_FILE})")
    return resume_changes(load_config(saved), config)
