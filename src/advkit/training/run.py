"""``advkit.train``: the library's entry point to a training run, on one process or N workers.

It joins the workers' process group (or the trivial world of one process), holds the run folder,
resumes a run the launcher restarted, and leaves the group it joined.
"""

from __future__ import annotations

from pathlib import Path

from advkit import runs
from advkit.config import TrainConfig
from advkit.data import DataSplits, StreamingSplits
from advkit.devices import resolve_device
from advkit.distributed import close_world, init_world, restarted
from advkit.models import NormalizedModel
from advkit.progress_display import log_to_stderr
from advkit.training.run_setup import as_used, changes_on_resume, holding
from advkit.training.trainer import Trainer, TrainResult


def train(
    config: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    data: DataSplits | StreamingSplits | None = None,
    model: NormalizedModel | None = None,
) -> TrainResult:
    """Train with ``config``; with ``resume``, continue the run in ``run_dir`` from its checkpoint.

    ``data`` replaces the dataset named in the config (tests, notebooks); the run folder then
    records its name (``data.dataset``) and no data_dir; ``model`` (``advkit.fit``) replaces
    the config's registered model. The run folder is held as its only
    writer throughout (:func:`advkit.runlock.hold_run`). Under torch's elastic launcher
    (``torchrun``, ``advkit train --nproc N``), or inside a process group the caller started,
    every worker calls this and they train one model together; workers the launcher restarted
    after a failure resume from the run's last checkpoint. The epoch lines go to stderr (unless
    ``config.quiet``) when the caller configured no logging (:func:`log_to_stderr`).
    """
    with log_to_stderr(config.quiet):
        return _train(config, run_dir, resume=resume, data=data, model=model)


def _train(
    config: TrainConfig,
    run_dir: str | Path | None,
    *,
    resume: bool,
    data: DataSplits | StreamingSplits | None,
    model: NormalizedModel | None,
) -> TrainResult:
    world = init_world(resolve_device(config.validate().device), config.dist_backend)
    if run_dir is not None and restarted():  # torch's launcher restarted the workers: continue
        resume = resume or (Path(run_dir) / runs.CHECKPOINT_DIR / runs.LAST_CHECKPOINT).is_file()
    try:
        with holding(run_dir):
            # Before the data loads: a refused change is known at once.
            changes = None
            if resume and run_dir is not None:
                changes = changes_on_resume(Path(run_dir), as_used(config, data))
            trainer = Trainer(config, run_dir, data=data, world=world, model=model, resuming=resume)
            if resume:
                trainer.resume(changes)
            return trainer.fit()
    finally:
        close_world(world)
