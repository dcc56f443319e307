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
from advkit.models import NormalizedModel, create_model
from advkit.models.model_source import ModelSource
from advkit.models.user_factory import check_output
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


def build_model(
    config: TrainConfig,
    data: Any,
    input_shape: tuple[int, ...],
    source: ModelSource,
    device: torch.device,
    world: World,
    *,
    given: NormalizedModel | None = None,
) -> NormalizedModel:
    """The run's model on ``device``: ``given`` (a caller's module from ``advkit.fit``,
    normalization inside) or the one ``source`` builds, normalized by the data's statistics
    unless ``config.normalize`` is off; a user's factory's output is checked before training.
    Then SyncBatchNorm and channels-last as the config asks."""
    if given is not None:
        model = given.to(device)
    else:
        channels = input_shape[0]
        mean = data.mean if config.normalize else (0.0,) * channels
        std = data.std if config.normalize else (1.0,) * channels
        model = create_model(
            source.build, num_classes=data.num_classes, mean=mean, std=std,
            **(config.model_args or {}),
        ).to(device)  # fmt: skip
        if source.user:  # a user's model: its output, before any training
            check_output(model, input_shape, data.num_classes, config.model)
    if config.sync_bn:
        model = sync_batchnorm(model, device, world)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


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
