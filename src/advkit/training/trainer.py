"""The method-agnostic training loop.

The trainer knows no method by name: it builds one from the registry, hands it batches and an
``optimize`` closure, and does the bookkeeping around it: LR schedule, eps warm-up, EMA, per-epoch
validation (clean and PGD accuracy), model selection by robust accuracy, the catastrophic-
overfitting guard, checkpoints that survive a kill, and the run folder.

    >>> from advkit.config import TrainConfig
    >>> result = train(TrainConfig(epochs=1, subset=1000), run_dir=Path("runs/quick"))
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from advkit import runs
from advkit.config import ConfigError, TrainConfig, load_config, resume_changes, save_config
from advkit.data import (
    DataError,
    DataSplits,
    epoch_order,
    iterate_batches,
    load_dataset,
    num_batches,
)
from advkit.devices import resolve_device
from advkit.methods import METHODS, Method, StepContext
from advkit.models import create_model
from advkit.runlock import hold_run
from advkit.training.checkpoint import (
    atomic_write,
    load_state,
    load_weights,
    save_json,
    save_state,
    save_weights,
)
from advkit.training.guard import CatastrophicOverfittingGuard
from advkit.training.optim import build_optimizer
from advkit.training.plots import plot_curves
from advkit.training.progress import Progress, epoch_line
from advkit.training.schedules import build_scheduler
from advkit.training.validation import robust_accuracy

log = logging.getLogger("advkit.train")


class TrainingInterrupted(RuntimeError):
    """Raised after a stop request (SIGINT/SIGTERM) once the state is safely checkpointed."""

    def __init__(self, run_dir: Path | None) -> None:
        where = f"; resume with: advkit train --resume {run_dir}" if run_dir else ""
        super().__init__(f"training interrupted, checkpoint saved{where}")
        self.run_dir = run_dir


@dataclass
class TrainResult:
    """What a finished run produced."""

    model: nn.Module
    history: list[dict[str, Any]]
    run_dir: Path | None
    metadata: dict[str, Any]
    selected_epoch: int


@dataclass
class _EpochTotals:
    """Running sums of one epoch, kept as tensors so the hot loop never syncs with the host."""

    loss: Tensor
    correct: Tensor
    seen: int = 0
    extra: dict[str, Tensor] = field(default_factory=dict)

    @classmethod
    def zeros(cls, device: torch.device) -> _EpochTotals:
        zero = torch.zeros((), dtype=torch.float64, device=device)
        return cls(loss=zero.clone(), correct=zero.clone())

    def state_dict(self) -> dict[str, Any]:
        return {"loss": self.loss, "correct": self.correct, "seen": self.seen, "extra": self.extra}

    @classmethod
    def from_state(cls, state: dict[str, Any], device: torch.device) -> _EpochTotals:
        return cls(
            loss=state["loss"].to(device), correct=state["correct"].to(device),
            seen=int(state["seen"]), extra={k: v.to(device) for k, v in state["extra"].items()},
        )  # fmt: skip


class Trainer:
    """Trains one model with one method under one config, writing into ``run_dir`` if given."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: str | Path | None = None,
        *,
        data: DataSplits | None = None,
        on_step: Callable[[Trainer, int], None] | None = None,
    ) -> None:
        self.config = _as_used(config.validate(), data)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.device = resolve_device(config.device)
        self.on_step = on_step
        self._stop_requested = False

        torch.manual_seed(config.seed)
        self.data = data if data is not None else load_dataset(
            config.dataset, config.data_dir, val_size=config.val_size, subset=config.subset,
            seed=config.seed,
        )  # fmt: skip
        _check_splits(self.data)
        config.check_budgets(tuple(self.data.train.images.shape[1:]))  # L2 vs the input diameter
        self.train_data = self.data.train.to(self.device)
        self.val_data = self.data.val.take(
            torch.arange(min(config.val_examples, len(self.data.val)))
        ).to(self.device)
        self.augment = config.augment or self.data.augment

        channels = len(self.data.mean)
        self.input_mean = self.data.mean if config.normalize else (0.0,) * channels
        self.input_std = self.data.std if config.normalize else (1.0,) * channels
        self.model = create_model(
            config.model, num_classes=self.data.num_classes, mean=self.input_mean,
            std=self.input_std,
        ).to(self.device)  # fmt: skip
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.step_model: nn.Module = torch.compile(self.model) if config.compile else self.model
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
        self._last_verdict: dict[str, Any] = {}
        self._checked_step = -1  # global step of the last guard check
        self.epoch_checks: list[dict[str, Any]] = []  # this epoch's mid-epoch guard checks

        # Position and history; replaced by a checkpoint on resume.
        self.epoch = 0
        self.batch = 0
        self.global_step = 0
        self.train_seconds = 0.0
        self.history: list[dict[str, Any]] = []
        self.best_metric = -math.inf
        self.best_epoch = 0
        self.totals = _EpochTotals.zeros(self.device)
        self._best_state: dict[str, Tensor] | None = None

    @staticmethod
    def _passes(config: TrainConfig, method: Method) -> int:
        """Passes over the data: ``epochs``, or the Free-AT paper's epochs / replays."""
        if config.paper_epochs:
            return max(1, math.ceil(config.epochs / method.updates_per_batch))
        return config.epochs

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly where the run stands."""
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": "advkit-checkpoint/1",
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "method": self.method.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "guard": self.guard.state_dict(),
            "rng": rng,
            "epoch": self.epoch,
            "batch": self.batch,
            "global_step": self.global_step,
            "train_seconds": self.train_seconds,
            "history": json.dumps(self.history),
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "totals": self.totals.state_dict(),
            "epoch_checks": json.dumps(self.epoch_checks),
            "data": json.dumps(self.data_fingerprint()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.method.load_state_dict(state["method"])
        if self.ema is not None and state["ema"] is not None:
            self.ema.load_state_dict(state["ema"])
        self.guard.load_state_dict(state["guard"])
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self.global_step = int(state["global_step"])
        self.train_seconds = float(state["train_seconds"])
        self.history = json.loads(state["history"])
        self.best_metric, self.best_epoch = float(state["best_metric"]), int(state["best_epoch"])
        self.totals = _EpochTotals.from_state(state["totals"], self.device)
        self.epoch_checks = json.loads(state.get("epoch_checks", "[]"))
        torch.set_rng_state(state["rng"]["cpu"])
        if "cuda" in state["rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)

    def save_checkpoint(self) -> None:
        if self.run_dir is not None:
            path = self.run_dir / runs.CHECKPOINT_DIR / runs.LAST_CHECKPOINT
            save_state(self.state_dict(), path)

    def resume(self, changes: dict[str, tuple[Any, Any]] | None = None) -> None:
        """Load ``checkpoints/last.pt`` from the run folder and rewrite metrics.jsonl to match.

        The config may differ from the run's config.yaml only in ``RESUMABLE_FIELDS`` (ConfigError
        otherwise; ``changes`` is that comparison when the caller made it already). Changes are
        applied, logged in resumes.jsonl, and recorded in config.yaml by :meth:`fit`. More (or
        fewer, down to those trained) epochs spread the LR schedule over the new total of updates
        from the current update on: the LR from here follows a run started with the new count.
        """
        if self.run_dir is None:
            raise ValueError("resume needs a run folder")
        path = self.run_dir / runs.CHECKPOINT_DIR / runs.LAST_CHECKPOINT
        if not path.is_file():
            raise runs.RunError(f"no checkpoint to resume from at {path}")
        with self.hold_run_dir():
            if changes is None:
                changes = _resume_changes(self.run_dir, self.config)
            state = load_state(path, map_location=self.device)
            self._check_same_data(json.loads(state.get("data", "null")))
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
            self._write_history()
            record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "epoch": self.epoch,
                      "batch": self.batch, "step": self.global_step,
                      "changes": {k: list(v) for k, v in changes.items()}}  # fmt: skip
            with open(self.run_dir / runs.RESUMES_FILE, "a") as handle:
                handle.write(json.dumps(record) + "\n")
        for name, (old, new) in changes.items():
            log.info("resume: %s %s -> %s", name, old, new)
        log.info("resumed %s at epoch %d, batch %d", self.run_dir, self.epoch + 1, self.batch)

    def hold_run_dir(self) -> AbstractContextManager[None]:
        """Hold the run folder as its only writer (nothing without one): the one seam of locks."""
        return _holding(self.run_dir)

    def data_fingerprint(self) -> dict[str, Any]:
        """What identifies the training data, order included: a resumed run must read the same."""
        if not hasattr(self, "_fingerprint"):
            train = self.data.train
            n = len(train)
            weights = torch.arange(1, n + 1, device=train.device)  # order-sensitive checksums
            per_image = train.images.reshape(n, -1).sum(dim=1, dtype=torch.int64)
            self._fingerprint = {
                "dataset": self.data.dataset, "num_classes": self.data.num_classes,
                "input_shape": list(train.images.shape[1:]), "train": n,
                "val": len(self.data.val), "images": int((per_image * weights).sum()),
                "labels": int((train.labels * weights).sum()),
            }  # fmt: skip
        return self._fingerprint

    def _check_same_data(self, recorded: dict[str, Any] | None) -> None:
        if recorded is None:  # a checkpoint of an older advkit
            return
        now = self.data_fingerprint()
        differ = [
            f"other training {k}"
            if k in ("images", "labels")
            else f"{k} {now[k]} (the run's: {recorded[k]})"
            for k in recorded
            if now.get(k) != recorded[k]
        ]
        if differ:
            where = self.config.data_dir or "the default location"
            raise DataError(
                f"the data read from {where} is not the data this run was trained on: "
                f"{', '.join(differ)}; pass the run's data with --data-dir"
            )

    def request_stop(self) -> None:
        """Ask the loop to checkpoint and stop after the current step (signal-safe)."""
        self._stop_requested = True

    # ------------------------------------------------------------------ loop
    def fit(self) -> TrainResult:
        """Train until ``epochs`` passes are done; returns the selected model and history."""
        with self.hold_run_dir():
            if self.run_dir is not None:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                save_config(self.config, self.run_dir / runs.CONFIG_FILE)
            with self._stop_on_signals():
                while self.epoch < self.epochs and not self.guard.stopped:
                    self._train_epoch()
                    self._end_epoch()
            return self._finish()

    def current_eps(self) -> float:
        """eps, ramped linearly over the first ``eps_warmup_epochs`` epochs."""
        ramp = self.config.eps_warmup_epochs
        if ramp <= 0:
            return self.config.eps
        progress = self.epoch + self.batch / self.batches_per_epoch
        return self.config.eps * min(1.0, (progress + 1 / self.batches_per_epoch) / ramp)

    def _optimize(self, loss: Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.grad_clip is not None:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    def _train_epoch(self) -> None:
        config = self.config
        order = epoch_order(len(self.train_data), config.seed, self.epoch, device=self.device)
        batches = iterate_batches(
            self.train_data, config.batch_size, order=order, start_batch=self.batch,
            augment=self.augment,
        )  # fmt: skip
        progress = Progress(
            total=self.batches_per_epoch, initial=self.batch,
            desc=f"epoch {self.epoch + 1}/{self.epochs}", disable=config.quiet,
        )  # fmt: skip
        self.model.train()
        started = time.perf_counter()
        with progress:
            for inputs, labels in batches:
                if config.channels_last:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                ctx = StepContext(
                    model=self.step_model, attack_model=self.step_model, optimize=self._optimize,
                    eps=self.current_eps(), epoch=self.epoch, step=self.global_step,
                )  # fmt: skip
                with torch.autocast(self.device.type, torch.bfloat16, enabled=config.amp):
                    out = self.method.step(inputs, labels, ctx)
                self._accumulate(out.loss, out.logits, labels, out.metrics)
                self.batch += 1
                self.global_step += 1
                progress.update(self.totals, self.optimizer.param_groups[0]["lr"], len(labels))
                if self.on_step is not None:
                    self.on_step(self, self.global_step)
                if self._stop_requested:
                    self.train_seconds += time.perf_counter() - started
                    self.save_checkpoint()
                    raise TrainingInterrupted(self.run_dir)
                if config.checkpoint_every and self.global_step % config.checkpoint_every == 0:
                    self.train_seconds += time.perf_counter() - started
                    started = time.perf_counter()
                    self.save_checkpoint()
                if config.co_check_every and self.global_step % config.co_check_every == 0:
                    self.train_seconds += time.perf_counter() - started
                    if verdict := self._guard_check():
                        self.epoch_checks.append({"step": self.global_step, **verdict})
                    started = time.perf_counter()
                    self.model.train()
                    if self.guard.stopped:
                        break
        self.train_seconds += time.perf_counter() - started

    def _accumulate(self, loss: Tensor, logits: Tensor, labels: Tensor, extra: dict) -> None:
        n = len(labels)
        totals = self.totals
        totals.loss += loss.detach().double() * n
        totals.correct += (logits.argmax(dim=1) == labels).sum()
        totals.seen += n
        for name, value in extra.items():
            if name not in totals.extra:
                totals.extra[name] = torch.zeros((), dtype=torch.float64, device=self.device)
            totals.extra[name] += value.detach().double() * n

    def _eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _validate(self) -> dict[str, float]:
        """Clean and PGD-``val_steps`` accuracy on the validation split (at the full eps)."""
        if len(self.val_data) == 0:
            return {}
        clean, robust = robust_accuracy(
            self._eval_model(), self.val_data, eps=self.config.eps, norm=self.config.norm,
            steps=self.config.val_steps, batch_size=max(self.config.batch_size, 256),
        )  # fmt: skip
        return {"val_clean": clean, "val_pgd": robust}

    def _guard_check(self) -> dict[str, Any]:
        """Run the catastrophic-overfitting check and apply its verdict (rollback or stop)."""
        if not self.guard.enabled or len(self.val_data) == 0:
            return {}
        if self.guard.stopped or self._checked_step == self.global_step:
            return self._last_verdict  # stopped mid-epoch, or these weights were just checked
        self._checked_step = self.global_step
        verdict = self.guard.check(
            self._eval_model(), self.val_data, self.config.eps, self.config.norm
        )
        if verdict.collapsed:
            log.warning("catastrophic overfitting at step %d: %s", self.global_step, verdict.reason)
            rollback = self.guard.mode == "rollback" and self.guard.snapshot is not None
            if rollback and self.guard.collapses > self.guard.max_rollbacks:
                log.warning(
                    "collapsed again after %d rollbacks: stopping; the best checkpoint is the "
                    "final model", self.guard.max_rollbacks,
                )  # fmt: skip
                self.guard.stopped = True
            elif rollback:
                self._restore_snapshot(self.guard.snapshot)
                self.method.scale_step_size(self.guard.step_factor)
                log.warning(
                    "rolled back to the last good weights; attack step x%g", self.method.step_scale
                )
            elif self.guard.mode == "stop":
                self.guard.stopped = True
        elif self.guard.mode == "rollback":
            self.guard.snapshot = self._snapshot()
        self._last_verdict = verdict.as_metrics()
        return self._last_verdict

    def _snapshot(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict()}
        if self.ema is not None:
            state["ema"] = self.ema.state_dict()
        return copy.deepcopy(state)

    def _restore_snapshot(self, snapshot: dict[str, Any]) -> None:
        self.model.load_state_dict(snapshot["model"])
        self.optimizer.load_state_dict(snapshot["optimizer"])
        if self.ema is not None:
            self.ema.load_state_dict(snapshot["ema"])

    def _end_epoch(self) -> None:
        totals, seen = self.totals, max(self.totals.seen, 1)
        record: dict[str, Any] = {
            "epoch": self.epoch + 1,
            "train_loss": totals.loss.item() / seen,
            "train_acc": totals.correct.item() / seen,
            **{f"train_{k}": v.item() / seen for k, v in totals.extra.items()},
            "lr": self.optimizer.param_groups[0]["lr"],
            "eps": self.current_eps(),
            "train_seconds": round(self.train_seconds, 3),
        }
        record |= self._validate()
        record |= self._guard_check()
        if self.epoch_checks:
            record["co_checks"] = self.epoch_checks
            self.epoch_checks = []
        metric = record.get("val_pgd" if self.method.adversarial else "val_clean", -math.inf)
        self.history.append(record)
        self.epoch += 1
        self.batch = 0
        self.totals = _EpochTotals.zeros(self.device)
        if metric > self.best_metric and not record.get("co_collapsed", False):
            self.best_metric, self.best_epoch = metric, self.epoch
            self._save_best()
        log.info("%s", epoch_line(self.history, self.epochs))
        self._write_history()
        self.save_checkpoint()

    def _save_best(self) -> None:
        if self.run_dir is None:
            self._best_state = copy.deepcopy(self._eval_model().state_dict())
            return
        folder = self.run_dir / runs.CHECKPOINT_DIR
        save_weights(self._eval_model().state_dict(), folder / runs.BEST_WEIGHTS)
        save_json({"epoch": self.best_epoch, "metric": self.best_metric}, folder / "best.json")

    def _write_history(self) -> None:
        if self.run_dir is None:
            return
        lines = "".join(json.dumps(record) + "\n" for record in self.history)
        path = self.run_dir / runs.METRICS_FILE
        atomic_write(path, lambda tmp: tmp.write_text(lines))

    # ------------------------------------------------------------------ end
    def _finish(self) -> TrainResult:
        final = copy.deepcopy(self._eval_model()).eval()
        selected = self.epoch
        if self.config.select == "best" and self.best_epoch > 0:
            if self.run_dir is not None:
                best = self.run_dir / runs.CHECKPOINT_DIR / runs.BEST_WEIGHTS
                final.load_state_dict(load_weights(best, self.device))
            else:
                final.load_state_dict(self._best_state)
            selected = self.best_epoch
        metadata = self.metadata(selected)
        if self.run_dir is not None:
            save_weights(final.state_dict(), self.run_dir / runs.MODEL_FILE)
            save_json(metadata, self.run_dir / runs.META_FILE)
            plot_curves(self.history, self.run_dir / "curves.png", title=self._title())
        return TrainResult(final, self.history, self.run_dir, metadata, selected)

    def _title(self) -> str:
        c = self.config
        return f"{c.method} on {c.dataset} ({c.model}), {c.norm} eps={c.eps:.4g}"

    def metadata(self, selected_epoch: int) -> dict[str, Any]:
        """model.json: all a reader needs to rebuild and evaluate the model."""
        from advkit import __version__

        c = self.config
        selected = next((r for r in self.history if r["epoch"] == selected_epoch), {})
        return {
            "format": runs.META_FORMAT,
            "advkit_version": __version__,
            "architecture": c.model,
            "model_kwargs": {},
            "num_classes": self.data.num_classes,
            "mean": list(self.input_mean),
            "std": list(self.input_std),
            "input_shape": list(self.train_data.images.shape[1:]),
            "dataset": c.dataset,
            "data_dir": c.data_dir,
            "class_names": self.data.class_names,
            "threat": {"norm": c.norm, "eps": c.eps},
            "method": {"name": c.method, **_jsonable(self.method.describe())},
            "epochs": self.epochs,
            "batch_size": c.batch_size,
            "seed": c.seed,
            "ema_decay": c.ema_decay,
            "selected": c.select,
            "selected_epoch": selected_epoch,
            "val_clean": selected.get("val_clean"),
            "val_pgd": selected.get("val_pgd"),
            "train_seconds": round(self.train_seconds, 2),
            "device": str(self.device),
            "torch_version": torch.__version__,
        }

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """SIGINT/SIGTERM ask for a checkpoint and a clean stop instead of killing the process."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, frame: Any) -> None:
            del signum, frame
            self.request_stop()

        for sig in previous:
            signal.signal(sig, handler)
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, str | int | float | bool | None) else str(v)
        for k, v in values.items()
    }


def train(
    config: TrainConfig,
    run_dir: str | Path | None = None,
    *,
    resume: bool = False,
    data: DataSplits | None = None,
) -> TrainResult:
    """Train with ``config``; with ``resume``, continue the run in ``run_dir`` from its checkpoint.

    ``data`` replaces the dataset named in the config (tests, notebooks); the run folder then
    records its name (``data.dataset``) and no data_dir. The run folder is held as its only
    writer throughout (:func:`advkit.runlock.hold_run`).
    """
    with _holding(run_dir):
        # Before the data loads: a refused change is known at once.
        changes = None
        if resume and run_dir is not None:
            changes = _resume_changes(Path(run_dir), _as_used(config, data))
        trainer = Trainer(config, run_dir, data=data)
        if resume:
            trainer.resume(changes)
        return trainer.fit()


def _holding(run_dir: str | Path | None) -> AbstractContextManager[None]:
    """The run-folder lock of training: where a distributed run takes it on rank 0 alone."""
    return nullcontext() if run_dir is None else hold_run(run_dir, "training")


def _as_used(config: TrainConfig, data: DataSplits | None) -> TrainConfig:
    """``config`` as the run folder records it: with given ``data``, its dataset and no data_dir."""
    if data is None:
        return config
    return dataclasses.replace(config, dataset=data.dataset, data_dir=None)


def _resume_changes(run_dir: Path, config: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """What ``config`` changes of the run in ``run_dir``; ConfigError for what may not change."""
    saved = run_dir / runs.CONFIG_FILE
    if not saved.is_file():
        raise runs.RunError(f"{run_dir} is not a run folder (no {runs.CONFIG_FILE})")
    return resume_changes(load_config(saved), config)


def _check_splits(data: DataSplits) -> None:
    """Refuse splits whose images, labels and class facts disagree (e.g. labels >= num_classes)."""
    shapes = {
        tuple(part.images.shape[1:]) for part in (data.train, data.val, data.test) if len(part)
    }
    if len(shapes) > 1:
        raise DataError(f"the splits' images differ in shape (C, H, W): {sorted(shapes)}")
    channels = data.train.images.shape[1]
    if len(data.mean) != channels or len(data.std) != channels:
        raise DataError(
            f"mean and std need one value per channel ({channels}), got {len(data.mean)} and "
            f"{len(data.std)}"
        )
    if data.class_names is not None and len(data.class_names) != data.num_classes:
        raise DataError(
            f"{len(data.class_names)} class_names for num_classes={data.num_classes}: make them "
            "agree"
        )
    for name, part in (("train", data.train), ("val", data.val), ("test", data.test)):
        if (
            len(part)
            and not 0 <= int(part.labels.min()) <= int(part.labels.max()) < data.num_classes
        ):
            raise DataError(
                f"{name} labels span {int(part.labels.min())}..{int(part.labels.max())}, outside "
                f"0..{data.num_classes - 1} for num_classes={data.num_classes}: fix the labels or "
                "num_classes"
            )
