"""The method-agnostic training loop.

The trainer knows no method by name and no world size: it builds the method from the registry,
hands it this worker's slice of each global batch and an ``optimize`` closure, and keeps the
bookkeeping around it: LR schedule, eps warm-up, EMA, per-epoch validation, model selection, the
catastrophic-overfitting guard, checkpoints that survive a kill. Its parts live beside it:
``batches`` (the worker's slices), ``totals`` (train metrics), ``run_writer`` (the folder),
``selection`` (best epoch), ``guard`` (checks and rollbacks), ``trainer_state`` and
``rank_state`` (the checkpoint), ``epoch_cost`` (seconds and communication), ``tracking`` (the
measurements that only describe the run), ``run`` (the ``train`` entry point). Distribution
goes through ``advkit.distributed``: ``World`` (one process is the world of size 1) and the
gradient exchange ``attach_communication``.

    >>> from advkit.config import TrainConfig
    >>> result = train(TrainConfig(epochs=1, subset=1000), run_dir=Path("runs/quick"))
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from advkit import runs
from advkit.config import ConfigError, TrainConfig
from advkit.data import DataSplits, StreamingSplits, image_shape, num_batches
from advkit.devices import resolve_device
from advkit.distributed import World, worker_device
from advkit.distributed.compression import attach_communication
from advkit.methods import METHODS, Method, StepContext
from advkit.models import NormalizedModel
from advkit.models.exported import is_in_process
from advkit.models.model_source import model_source
from advkit.noise import sample_noise
from advkit.training.batches import METHOD_NOISE, Batch
from advkit.training.checkpoint import load_state
from advkit.training.data_checks import check_same_data, check_splits, fingerprint
from advkit.training.data_feed import DataFeed, open_data
from advkit.training.epoch_cost import EpochCost
from advkit.training.eps_schedule import ramped_eps, warmup_epochs
from advkit.training.guard import CatastrophicOverfittingGuard, GuardKeeper
from advkit.training.health import RunHealth
from advkit.training.optim import build_optimizer
from advkit.training.outcomes import NoGradientError, TrainingInterrupted, TrainResult
from advkit.training.precision import Precision
from advkit.training.progress import diverged_line, epoch_bar, epoch_line, showing_run
from advkit.training.run_setup import as_used, build_model, changes_on_resume, holding
from advkit.training.run_writer import RunWriter, model_metadata
from advkit.training.schedules import build_scheduler
from advkit.training.selection import BestModel
from advkit.training.signals import stop_on_signals
from advkit.training.totals import EpochTotals
from advkit.training.tracking import EpochTracking
from advkit.training.trainer_state import CHECKPOINT_FORMAT, capture, restore
from advkit.training.validation import clean_and_pgd

log = logging.getLogger("advkit.train")

__all__ = [
    "CHECKPOINT_FORMAT", "NoGradientError", "TrainResult", "Trainer", "TrainingInterrupted",
]  # fmt: skip


class Trainer:
    """Trains one model with one method under one config, writing into ``run_dir`` if given.

    ``world`` is this process's place among the workers (default: the single process).
    ``model`` (a :class:`NormalizedModel` a Python caller built, ``advkit.fit``) replaces the
    registry's model named in the config, which then names it ``python:<module>.<class>``.
    ``resuming``: the run continues from its folder, so a model given as a file is rebuilt from
    the folder's copy of it (call :meth:`resume` next).
    """

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path | None = None,
        *,
        data: DataSplits | StreamingSplits | None = None,
        on_step: Callable[[Trainer, int], None] | None = None,
        world: World | None = None,
        model: NormalizedModel | None = None,
        resuming: bool = False,
    ) -> None:
        self.config = as_used(config.validate(), data)
        self.world = world or World()
        self.world.check_divides(config.batch_size)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.writer = RunWriter(self.run_dir, enabled=self.world.is_writer, logs=config.log)
        self.device = worker_device(resolve_device(config.device), self.world)
        self.precision = Precision(self.config, self.device)  # autocast, fp16 loss scaling
        self.on_step = on_step
        self._stop_requested = False

        torch.manual_seed(config.seed)  # the same initial weights on every worker
        self.data = data if data is not None else open_data(config)
        check_splits(self.data)
        self.input_shape = image_shape(self.data.train)
        config.check_budgets(self.input_shape)  # L2 vs the input diameter
        self.data_fingerprint = fingerprint(self.data)
        # In memory or streamed (the same batches): the path, the workers, the val examples.
        self.feed = DataFeed(self.data, config, self.device, self.world)
        self.train_data = self.feed.train
        self.val_data = self.feed.val
        self.augment = config.augment or self.data.augment
        self.tracking = EpochTracking(
            config, train=self.train_data, val=self.val_data, test=self.data.test,
            world=self.world,
        )  # fmt: skip

        self.model_source = model_source(config.model, self.run_dir, resuming=resuming)
        self.model = build_model(
            config, self.data, self.input_shape, self.model_source, self.device, self.world,
            given=model,
        )  # fmt: skip
        self.input_mean = tuple(self.model.normalize.mean.tolist())
        self.input_std = tuple(self.model.normalize.std.tolist())
        # Attacks run on the plain (or compiled) module; only the weight update goes through DDP.
        self.attack_model: nn.Module = torch.compile(self.model) if config.compile else self.model
        self.step_model = self.world.wrap(self.attack_model)
        self.comm = attach_communication(
            self.step_model, config.grad_compression, powersgd_rank=config.powersgd_rank,
            error_feedback=config.error_feedback, seed=config.seed, rank=self.world.rank,
        )  # fmt: skip
        self.method: Method = METHODS.get(config.method).from_config(config)

        self.batches_per_epoch = num_batches(len(self.train_data), config.batch_size)
        if self.batches_per_epoch == 0:
            raise ValueError("the training set is empty: check --subset and --val-size")
        self.epochs = self._passes(config, self.method)
        self.total_updates = self.epochs * self.batches_per_epoch * self.method.updates_per_batch
        warmup = round(
            config.warmup_epochs * self.batches_per_epoch * self.method.updates_per_batch
        )
        self.optimizer = build_optimizer(self.model, config)
        self.scheduler = build_scheduler(
            self.optimizer, config.schedule, self.total_updates, warmup
        )
        self.ema = (
            AveragedModel(
                self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True
            )
            if config.ema_decay
            else None
        )
        self.guard = CatastrophicOverfittingGuard(
            mode=config.co_guard,
            max_drop=config.co_drop,
            step_factor=config.co_step_factor,
            max_rollbacks=config.co_max_rollbacks,
        )
        self.guard_keeper = GuardKeeper(
            self.guard, model=self.model, optimizer=self.optimizer, ema=self.ema,
            method=self.method, world=self.world,
        )  # fmt: skip
        self.best = BestModel(self.writer, self.method.adversarial)
        self.health = RunHealth(
            self.data.train.labels, self.val_data.labels, self.data.num_classes,
            self.data.class_names, announce=self.world.is_writer,
        )  # fmt: skip
        self.epoch_checks: list[dict[str, Any]] = []  # this epoch's mid-epoch guard checks

        # Position and history; replaced by a checkpoint on resume.
        self.epoch = 0
        self.batch = 0
        self.global_step = 0
        self.train_seconds = 0.0
        self.history: list[dict[str, Any]] = []
        self.totals = EpochTotals.zeros(self.device)
        self.cost = EpochCost()
        self._loss_scale = 1.0

    @staticmethod
    def _passes(config: TrainConfig, method: Method) -> int:
        """Passes over the data: ``epochs``, or the Free-AT paper's epochs / replays."""
        if config.paper_epochs:
            return max(1, math.ceil(config.epochs / method.updates_per_batch))
        return config.epochs

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the run stands (a collective: every
        worker calls it; the writer's result holds every worker's share)."""
        return capture(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        restore(self, state)

    def save_checkpoint(self) -> None:
        """checkpoints/last.pt (a collective with several workers; only the writer writes)."""
        self.cost.add_comm(self.comm.take())
        if self.run_dir is not None:
            self.writer.checkpoint(self.state_dict())
        self.world.barrier()  # nobody runs ahead of a checkpoint that may be resumed

    def resume(self, changes: dict[str, tuple[Any, Any]] | None = None) -> None:
        """Load ``checkpoints/last.pt`` from the run folder and rewrite metrics.jsonl to match.

        The config may differ from the run's config.yaml only in ``RESUMABLE_FIELDS`` (ConfigError
        otherwise; ``changes`` is that comparison when the caller made it already). Changes are
        applied, logged in resumes.jsonl, and recorded in config.yaml by :meth:`fit`. More (or
        fewer, down to those trained) epochs spread the LR schedule over the new total of updates
        from the current update on: the LR from here follows a run started with the new count.
        """
        path = self.writer.checkpoint_path
        if path is None:
            raise ValueError("resume needs a run folder")
        if not path.is_file():
            raise runs.RunError(f"no checkpoint to resume from at {path}")
        with self.hold_run_dir():
            if changes is None:
                changes = changes_on_resume(self.run_dir, self.config)
            state = load_state(path, map_location=self.device)
            where = self.config.data_dir or "the default location"
            check_same_data(self.data_fingerprint, json.loads(state.get("data", "null")), where)
            self.load_state_dict(state)
            trained = self.epoch + (self.batch > 0)  # passes begun
            if self.epochs < trained:
                raise ConfigError(
                    f"--epochs {self.config.epochs} is fewer than the {trained} passes this run "
                    "has trained; resume with at least that many"
                )
            if "epochs" in changes:  # recompute the current LR on the new total of updates
                self.scheduler.last_epoch -= 1
                self.scheduler.step()
            self.writer.history(self.history)
            self.writer.resumed(self.epoch, self.batch, self.global_step, changes)
        for name, (old, new) in changes.items():
            log.info("resume: %s %s -> %s", name, old, new)
        log.info("resumed %s at epoch %d, batch %d", self.run_dir, self.epoch + 1, self.batch)

    def hold_run_dir(self) -> AbstractContextManager[None]:
        """Hold the run folder as its only writer (rank 0 for all workers; nothing without a
        folder): the one seam of the locks."""
        return holding(self.run_dir)

    def request_stop(self) -> None:
        """Ask the loop to checkpoint and stop after the current step (signal-safe)."""
        self._stop_requested = True

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        """Train until ``epochs`` passes are done; returns the selected model and history."""
        with self.hold_run_dir():
            self.writer.start(self.config, self.model_source)
            if self.world.is_writer:  # here, not when built: a trainer built to plan says nothing
                log.info("%s", self.feed.path.line())
            if self.global_step == 0:  # a fresh run: the weights it starts from, kept on resume
                self.writer.initial(self.model.state_dict())
            if self.epoch == 0:  # epoch 1's record will carry what is wrong from the start
                self.health.at_start(self.model, self.val_data, self.input_shape)
            with stop_on_signals(self.request_stop), showing_run(self):
                try:
                    while self.epoch < self.epochs and not self.guard.stopped and not self.diverged:
                        self._train_epoch()
                        self._end_epoch()
                finally:
                    self.feed.close()
            return self._finish()

    @property
    def eps_warmup(self) -> float:
        """Passes over which eps ramps up from 0 (``eps_warmup_epochs``, or the automatic ramp)."""
        return warmup_epochs(self.config.eps_warmup_epochs, self.epochs)

    def current_eps(self) -> float:
        """eps: 0 for ``eps_hold_epochs`` passes, then ramped linearly over ``eps_warmup``."""
        progress = self.epoch + (self.batch + 1) / self.batches_per_epoch
        return ramped_eps(self.config.eps, self.eps_warmup, progress, self.config.eps_hold_epochs)

    def _optimize(self, loss: Tensor) -> None:
        if not loss.requires_grad:  # an attribute read: no cost per step
            raise NoGradientError(
                "the training loss does not depend on the model's weights through autograd: "
                "the model's forward runs under torch.no_grad() or detaches its output (or all "
                "its parameters are frozen); remove that so the model can be trained"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.precision.backward(loss * self._loss_scale if self._loss_scale != 1.0 else loss)
        if self.config.grad_clip is not None:
            self.precision.unscale(self.optimizer)  # clip the true gradients, not scaled ones
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.precision.update(self.optimizer)  # fp16: skipped when a gradient overflowed
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def _context(self, batch: Batch) -> StepContext:
        return StepContext(
            model=self.step_model, attack_model=self.attack_model, optimize=self._optimize,
            eps=self.current_eps(), epoch=self.epoch, step=self.global_step,
            noise=sample_noise(self.config.seed, batch.step, batch.ids, METHOD_NOISE),
        )  # fmt: skip

    def _train_epoch(self) -> None:
        config = self.config
        batches = self.feed.batches(
            epoch=self.epoch, start_batch=self.batch, first_step=self.global_step
        )
        progress = epoch_bar(self)
        self.model.train()
        started = time.perf_counter()
        with progress:
            for batch in batches:
                inputs = batch.inputs
                if config.channels_last:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                # DDP averages the workers' mean losses: weighting each by its share of the
                # global batch makes that the global mean (1.0 for evenly split batches).
                self._loss_scale = batch.share * self.world.size
                with self.precision.step(len(inputs)):
                    out = self.method.step(inputs, batch.labels, self._context(batch))
                self.totals.add(out.loss, out.logits, batch.labels, out.metrics)
                self.batch = batch.index + 1
                self.global_step = batch.step + 1
                progress.update(self.totals, self.optimizer.param_groups[0]["lr"], len(inputs))
                if self.on_step is not None:
                    self.on_step(self, self.global_step)
                if self.world.agree(self._stop_requested):
                    self._count_seconds(started)
                    self.save_checkpoint()
                    raise TrainingInterrupted(self.run_dir)
                if config.checkpoint_every and self.global_step % config.checkpoint_every == 0:
                    self._count_seconds(started)
                    self.save_checkpoint()
                    started = time.perf_counter()
                if config.co_check_every and self.global_step % config.co_check_every == 0:
                    self._count_seconds(started)
                    if verdict := self._guard_check():
                        self.epoch_checks.append({"step": self.global_step, **verdict})
                    started = time.perf_counter()
                    self.model.train()
                    if self.guard.stopped:
                        break
        self._count_seconds(started)

    def _count_seconds(self, started: float) -> None:
        """Add the training steps' time since ``started`` to the run's and the epoch's."""
        seconds = time.perf_counter() - started
        self.train_seconds += seconds
        self.cost.seconds += seconds

    # ------------------------------------------------------------------ measurements
    def _eval_model(self) -> nn.Module:
        """The weights measured and kept: the EMA if any, with BatchNorm statistics of every
        worker's shard averaged (on one worker, as they are)."""
        self.world.average_buffers(self.model)
        if self.ema is not None:
            self.world.average_buffers(self.ema)
            return self.ema.module
        return self.model

    def _validate(self, model: nn.Module) -> dict[str, float]:
        """Clean and PGD-``val_steps`` accuracy and mean loss on the validation split (at the
        full eps): val_clean, val_pgd, val_clean_loss, val_pgd_loss."""
        if len(self.val_data) == 0:
            return {}
        measured = clean_and_pgd(
            model, self.val_data, eps=self.config.eps, norm=self.config.norm,
            steps=self.config.val_steps, batch_size=max(self.config.batch_size, 256),
            world=self.world,
        )  # fmt: skip
        return {f"val_{key}": value for key, value in measured.items()}

    def _guard_check(self, model: nn.Module | None = None) -> dict[str, Any]:
        """The guard's check of ``model`` (default: the measured weights as they stand now)."""
        if not self.guard.enabled:
            return {}
        model = model if model is not None else self._eval_model()
        return self.guard_keeper.check(
            model, self.val_data, self.config.eps, self.config.norm, self.global_step
        )

    def _end_epoch(self) -> None:
        record: dict[str, Any] = {
            "epoch": self.epoch + 1,
            **self.totals.reduce(self.world),
            "lr": self.optimizer.param_groups[0]["lr"],
            "eps": self.current_eps(),
            "train_seconds": round(self.train_seconds, 3),
        }
        self.cost.add_comm(self.comm.take())
        record |= self.cost.record()
        self.cost = EpochCost()
        model = self._eval_model()
        record |= self._validate(model)
        record |= self.tracking.measure(model)
        record |= self._guard_check(model)
        if not math.isfinite(record["train_loss"]):  # the same on every worker (all-reduced)
            record["diverged"] = True
        if self.epoch_checks:
            record["co_checks"] = self.epoch_checks
            self.epoch_checks = []
        self.history.append(record)
        self.epoch += 1
        self.batch = 0
        self.totals = EpochTotals.zeros(self.device)
        # A collapsed epoch is never kept, so the weights measured above are the ones offered.
        self.best.offer(record, self.epoch, model)
        if self.world.is_writer:
            log.info("%s", epoch_line(self.history, self.epochs))
            if self.diverged:
                log.warning("%s", diverged_line(self, record["train_loss"]))
        self.health.after_epoch(record)  # said after the epoch's line, kept in its record
        self.writer.history(self.history)
        self.save_checkpoint()

    @property
    def diverged(self) -> bool:
        """The last epoch's training loss was not finite: training stops (kept in the history,
        so a resumed run knows it too)."""
        return bool(self.history) and bool(self.history[-1].get("diverged"))

    # ------------------------------------------------------------------ end
    def _finish(self) -> TrainResult:
        final = copy.deepcopy(self._eval_model()).eval()
        selected = self.epoch
        if self.config.select == "best" and self.best.epoch > 0:
            weights = self.best.weights(self.device)
            if weights is not None:
                final.load_state_dict(weights)
                selected = self.best.epoch
        metadata = self.metadata(selected)
        if is_in_process(self.config.model):  # no factory to rebuild it: a code-free copy
            metadata["exported"] = self.writer.export(final, self.input_shape)
        self.writer.final(final.state_dict(), metadata, self.history, self._title())
        self.world.barrier()
        return TrainResult(final, self.history, self.run_dir, metadata, selected)

    def _title(self) -> str:
        c = self.config
        return f"{c.method} on {c.dataset} ({c.model}), {c.norm} eps={c.eps:.4g}"

    def metadata(self, selected_epoch: int) -> dict[str, Any]:
        """model.json: all a reader needs to rebuild and evaluate the model."""
        return model_metadata(self, selected_epoch)
