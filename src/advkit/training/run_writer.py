"""Writing the run folder: config, per-epoch metrics, checkpoints, best and final weights.

Only the writer (rank 0, or the single process) touches the folder; on other workers, and
without a folder, every call is a no-op. File names are in ``advkit.runs``. Every file is written
atomically (:mod:`advkit.files`); a write the system refuses (a full disk...) ends training with
a :class:`advkit.errors.WriteError` that also says how to continue: the last checkpoint is intact.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from advkit import runs
from advkit.config import TrainConfig, save_config
from advkit.devices import backend_flags
from advkit.errors import WriteError
from advkit.files import write_text, writing
from advkit.models.exported import EXPORT_FILE, export_model
from advkit.models.model_source import ModelSource
from advkit.training.checkpoint import (
    load_weights,
    save_json,
    save_state,
    save_weights,
)
from advkit.training.epoch_cost import run_totals
from advkit.training.health import summarize as health_summary
from advkit.training.metric_logs import MetricLogs
from advkit.training.optim import scaled_lr
from advkit.training.plots import plot_curves


class RunWriter:
    """The run folder as the trainer sees it."""

    def __init__(
        self, run_dir: Path | None, *, enabled: bool = True, logs: list[str] | None = None
    ) -> None:
        self.run_dir = run_dir
        self.enabled = enabled and run_dir is not None
        self.logs = MetricLogs(run_dir, logs) if self.enabled else None
        #: (epoch, batch) of the last checkpoint this writer wrote, for the failure message.
        self.saved: tuple[int, int] | None = None

    @property
    def checkpoint_path(self) -> Path | None:
        return (
            None
            if self.run_dir is None
            else self.run_dir / runs.CHECKPOINT_DIR / runs.LAST_CHECKPOINT
        )

    @property
    def best_path(self) -> Path | None:
        return (
            None if self.run_dir is None else self.run_dir / runs.CHECKPOINT_DIR / runs.BEST_WEIGHTS
        )

    def start(self, config: TrainConfig, source: ModelSource | None = None) -> None:
        """config.yaml, and the copy of a model given as a file (``model_source/``)."""
        if self.enabled:
            path = self.run_dir / runs.CONFIG_FILE
            with self._resumable(), writing(path):
                self.run_dir.mkdir(parents=True, exist_ok=True)
                save_config(config, path)
                if source is not None:
                    source.save(self.run_dir)

    def initial(self, weights: dict[str, Tensor]) -> None:
        """checkpoints/init.safetensors, the weights training starts from, written once: a
        resumed run keeps the first (layer-criticality's re-initialization reads them)."""
        if self.enabled:
            path = self.run_dir / runs.CHECKPOINT_DIR / runs.INIT_WEIGHTS
            if not path.is_file():
                with self._resumable():
                    save_weights(weights, path)

    def history(self, records: list[dict[str, Any]]) -> None:
        """metrics.jsonl rewritten whole (atomically): after a resume it matches the checkpoint."""
        if not self.enabled:
            return
        lines = "".join(json.dumps(record) + "\n" for record in records)
        with self._resumable():
            write_text(self.run_dir / runs.METRICS_FILE, lines)
            self.logs.write(records)

    def resumed(
        self, epoch: int, batch: int, step: int, changes: dict[str, tuple[Any, Any]]
    ) -> None:
        """A line in resumes.jsonl: where the run was resumed and which options changed."""
        if not self.enabled:
            return
        self.saved = (epoch, batch)
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "epoch": epoch, "batch": batch,
                  "step": step, "changes": {k: list(v) for k, v in changes.items()}}  # fmt: skip
        path = self.run_dir / runs.RESUMES_FILE
        with self._resumable(), writing(path), open(path, "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def checkpoint(self, state: dict[str, Any]) -> None:
        if self.enabled:
            with self._resumable():
                save_state(state, self.checkpoint_path)
            self.saved = (int(state["epoch"]), int(state["batch"]))

    def best(self, weights: dict[str, Tensor], epoch: int, metric: float) -> None:
        if self.enabled:
            with self._resumable():
                save_weights(weights, self.best_path)
                save_json({"epoch": epoch, "metric": metric},
                          self.best_path.with_name("best.json"))  # fmt: skip

    def load_best(self, device: torch.device) -> dict[str, Tensor]:
        return load_weights(self.best_path, device)

    def export(self, model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, Any] | None:
        """The model as a torch.export program beside its weights (:mod:`advkit.models.exported`);
        what model.json records of it (``file``, or ``error`` when it could not be exported)."""
        if not self.enabled:
            return None
        reason = export_model(model, input_shape, self.run_dir / EXPORT_FILE)
        return {"file": EXPORT_FILE} if reason is None else {"error": reason}

    def final(
        self, weights: dict[str, Tensor], metadata: dict[str, Any], records: list[dict[str, Any]],
        title: str,
    ) -> None:  # fmt: skip
        if self.enabled:
            with self._resumable():
                save_weights(weights, self.run_dir / runs.MODEL_FILE)
                save_json(metadata, self.run_dir / runs.META_FILE)
                plot_curves(records, self.run_dir / "curves.png", title=title)
            self.logs.close()

    @contextmanager
    def _resumable(self) -> Iterator[None]:
        """A refused write's message ends with how to go on once it is fixed."""
        try:
            yield
        except WriteError as error:
            raise error.then(self._next_step()) from error

    def _next_step(self) -> str:
        """How the run goes on after a failed write: from its last checkpoint, if it has one."""
        if self.checkpoint_path is None or not self.checkpoint_path.is_file():
            return "start the run again (it has no checkpoint yet)"
        if self.saved is None:
            at = ""
        elif self.saved[1]:
            at = f", at batch {self.saved[1]} of epoch {self.saved[0] + 1}"
        else:
            at = f", after epoch {self.saved[0]}"
        return (f"continue with `advkit train --resume {self.run_dir}` from its last checkpoint "
                f"(intact{at})")  # fmt: skip


def model_metadata(trainer: Any, selected_epoch: int) -> dict[str, Any]:
    """model.json of ``trainer``'s run: all a reader needs to rebuild and evaluate the model."""
    from advkit import __version__

    c = trainer.config
    selected = next((r for r in trainer.history if r["epoch"] == selected_epoch), {})
    return {
        "format": runs.META_FORMAT,
        "advkit_version": __version__,
        "architecture": c.model,
        "model_kwargs": dict(c.model_args or {}),
        "model_source": trainer.model_source.record(),
        "num_classes": trainer.data.num_classes,
        "mean": list(trainer.input_mean),
        "std": list(trainer.input_std),
        "input_shape": list(trainer.input_shape),
        "dataset": c.dataset,
        "data_dir": c.data_dir,
        "class_names": trainer.data.class_names,
        "threat": {"norm": c.norm, "eps": c.eps},
        "eps_warmup_epochs": trainer.eps_warmup,
        "eps_hold_epochs": c.eps_hold_epochs,
        "method": {"name": c.method, **_jsonable(trainer.method.describe())},
        "epochs": trainer.epochs,
        "batch_size": c.batch_size,
        "optimizer": {"name": c.optimizer, "lr": scaled_lr(c), "lr_scaling": c.lr_scaling},
        "workers": trainer.world.size,
        "data_loading": trainer.feed.path.record(),
        "communication": {"compression": c.grad_compression, **run_totals(trainer.history)},
        "seed": c.seed,
        "ema_decay": c.ema_decay,
        "selected": c.select,
        "selected_epoch": selected_epoch,
        "val_clean": selected.get("val_clean"),
        "val_pgd": selected.get("val_pgd"),
        "health": health_summary(trainer.history),
        "train_seconds": round(trainer.train_seconds, 2),
        "device": str(trainer.device),
        "precision": trainer.precision.record(),
        "backends": backend_flags(trainer.device),
        "torch_version": torch.__version__,
    }


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, str | int | float | bool | None) else str(v)
        for k, v in values.items()
    }
